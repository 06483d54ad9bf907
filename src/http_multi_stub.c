/*
 * Provisional one-at-a-time stand-in for the concurrent transport, so
 * that sync can be built and tested before the transport lands.
 */
#include "ghl_fdw.h"

typedef struct StubItem
{
	GhlRequest	request;
	void	   *tag;
} StubItem;

struct GhlMulti
{
	GhlConnection *conn;
	GhlRequestStats *stats;
	List	   *queue;
	MemoryContext cxt;
};

GhlMulti *
ghl_multi_start(GhlConnection *conn, int max_concurrency, GhlRequestStats *stats)
{
	GhlMulti   *m = palloc0(sizeof(GhlMulti));

	m->conn = conn;
	m->stats = stats;
	m->cxt = CurrentMemoryContext;
	return m;
}

void
ghl_multi_add(GhlMulti *multi, const GhlRequest *request, void *tag)
{
	MemoryContext old = MemoryContextSwitchTo(multi->cxt);
	StubItem   *item = palloc0(sizeof(StubItem));

	item->request = *request;
	item->request.path = request->path ? pstrdup(request->path) : NULL;
	item->request.body = request->body ? pstrdup(request->body) : NULL;
	item->tag = tag;
	multi->queue = lappend(multi->queue, item);
	MemoryContextSwitchTo(old);
}

bool
ghl_multi_next(GhlMulti *multi, GhlResponse *response, void **tag)
{
	StubItem   *item;

	if (multi->queue == NIL)
		return false;
	item = linitial(multi->queue);
	multi->queue = list_delete_first(multi->queue);
	ghl_http_execute(multi->conn, &item->request, response, multi->stats);
	*tag = item->tag;
	return true;
}

void
ghl_multi_finish(GhlMulti *multi)
{
}
