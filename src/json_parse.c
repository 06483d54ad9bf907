/*-------------------------------------------------------------------------
 *
 * json_parse.c
 *		  The parser of the API's answers: one pass over a response body
 *		  into a tree that lives in one memory context.
 *
 * Every scan and every sync parses every page it reads.  A json-c document
 * is a malloc'd node and a hash table per value, freed node by node, and
 * building and freeing them was a third of a full sync's time.  Here the
 * body is copied once into the tree's memory context and every string is
 * decoded in place in that copy (a decoded string is never longer than its
 * escaped form), nodes are carved from large blocks, and resetting the
 * context frees the whole tree at once, on success and on error alike.
 *
 * The grammar is RFC 8259's.  Like json-c before it, the parser also reads
 * NaN, Infinity and -Infinity (as numbers marked non-finite, which the
 * conversions refuse where a value is used, so an unread field does not
 * fail a row), passes "\u0000" and invalid UTF-8 bytes on as they came (the
 * conversions check every string they use), reads a lone surrogate escape
 * as U+FFFD and keeps the last value of a key given twice.  Nesting is
 * bounded, so a hostile answer cannot exhaust the stack.
 *
 * IDENTIFICATION
 *		  src/json_parse.c
 *
 *-------------------------------------------------------------------------
 */
#include "ghl_fdw.h"

#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"

/* deeper than any answer of the API; json-c stopped at 32 */
#define GHL_JSON_MAX_DEPTH	64

/* nodes and member arrays are carved from blocks of this size */
#define GHL_JSON_BLOCK_SIZE	(32 * 1024)

typedef struct JsonParser
{
	char	   *cur;			/* next byte to read, in the copy */
	char	   *end;
	char	   *start;
	char	   *block;			/* the current block of nodes */
	Size		block_free;
	GhlJson   **elems;			/* elements of the open arrays */
	int			nelems;
	int			max_elems;
	GhlJsonMember *members;		/* members of the open objects */
	int			nmembers;
	int			max_members;
	const char *server_name;
} JsonParser;

static const GhlJson json_null = {GHL_JSON_NULL};
static const GhlJson json_true = {GHL_JSON_BOOL, false, 0, {.boolean = true}};
static const GhlJson json_false = {GHL_JSON_BOOL, false, 0, {.boolean = false}};

static GhlJson *parse_value(JsonParser *p, int depth);
static GhlJson *parse_object(JsonParser *p, int depth);
static GhlJson *parse_array(JsonParser *p, int depth);
static GhlJson *parse_number(JsonParser *p);
static char *parse_string(JsonParser *p, int *len);
static void keep_last_of_each_key(JsonParser *p, int first);
static void *parser_alloc(JsonParser *p, Size size);
static void pg_attribute_noreturn() parse_error(JsonParser *p, const char *what);

/*
 * The hash of a key (FNV-1a): keys are short, and every key of every row
 * is hashed, so a call to hash_bytes() costs more than the hashing.
 */
static inline uint32
key_hash(const char *key, int len)
{
	uint32		h = 2166136261u;
	int			i;

	for (i = 0; i < len; i++)
		h = (h ^ (unsigned char) key[i]) * 16777619u;
	return h;
}

/* white space ends at the NUL after the copy's end, too */
static inline void
skip_space(JsonParser *p)
{
	while (*p->cur == ' ' || *p->cur == '\n' || *p->cur == '\r' || *p->cur == '\t')
		p->cur++;
}

/*
 * Parse a whole response body into a tree in CurrentMemoryContext.  Text
 * that is not one JSON value (with white space around it) is 22032.
 */
GhlJson *
ghl_json_parse(const char *data, size_t len, const char *server_name)
{
	JsonParser	p;
	GhlJson    *root;

	memset(&p, 0, sizeof(p));
	p.start = palloc_extended(len + 1, MCXT_ALLOC_HUGE);
	memcpy(p.start, data, len);
	p.start[len] = '\0';
	p.cur = p.start;
	p.end = p.start + len;
	p.server_name = server_name;

	root = parse_value(&p, 0);
	skip_space(&p);
	if (p.cur < p.end)
		parse_error(&p, "Unexpected data after the document");

	if (p.elems)
		pfree(p.elems);
	if (p.members)
		pfree(p.members);
	return root;
}

static void
parse_error(JsonParser *p, const char *what)
{
	if (p->cur >= p->end)
		what = "The document ends early";
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_JSON_TEXT),
			 errmsg("GHL server \"%s\" returned invalid JSON", p->server_name),
			 errdetail("%s at byte %zu.", what, (size_t) (p->cur - p->start))));
}

/* size bytes for nodes, from the current block or a new one */
static void *
parser_alloc(JsonParser *p, Size size)
{
	void	   *result;

	size = MAXALIGN(size);
	if (size > p->block_free)
	{
		if (size > GHL_JSON_BLOCK_SIZE / 4)
			return palloc_extended(size, MCXT_ALLOC_HUGE);
		p->block = palloc(GHL_JSON_BLOCK_SIZE);
		p->block_free = GHL_JSON_BLOCK_SIZE;
	}
	result = p->block;
	p->block += size;
	p->block_free -= size;
	return result;
}

/* the literal word at the cursor, or an error */
static inline void
expect_word(JsonParser *p, const char *word, size_t len)
{
	if ((size_t) (p->end - p->cur) < len || memcmp(p->cur, word, len) != 0)
		parse_error(p, "Unexpected character");
	p->cur += len;
}

static GhlJson *
parse_value(JsonParser *p, int depth)
{
	GhlJson    *value;

	skip_space(p);
	switch (*p->cur)
	{
		case '{':
			if (depth >= GHL_JSON_MAX_DEPTH)
				parse_error(p, "Nesting too deep");
			return parse_object(p, depth + 1);
		case '[':
			if (depth >= GHL_JSON_MAX_DEPTH)
				parse_error(p, "Nesting too deep");
			return parse_array(p, depth + 1);
		case '"':
			value = parser_alloc(p, sizeof(GhlJson));
			value->type = GHL_JSON_STRING;
			value->nonfinite = false;
			value->val.text = parse_string(p, &value->len);
			return value;
		case 't':
			expect_word(p, "true", 4);
			return (GhlJson *) &json_true;
		case 'f':
			expect_word(p, "false", 5);
			return (GhlJson *) &json_false;
		case 'n':
			expect_word(p, "null", 4);
			return (GhlJson *) &json_null;
		default:
			return parse_number(p);
	}
}

/*
 * Begin a container at the cursor (on its brace or bracket): its node.
 * *empty says whether it closes at once; the cursor is then past it.
 */
static GhlJson *
container_begin(JsonParser *p, GhlJsonType type, char close, bool *empty)
{
	GhlJson    *node = parser_alloc(p, sizeof(GhlJson));

	node->type = type;
	node->nonfinite = false;
	p->cur++;
	skip_space(p);
	*empty = (*p->cur == close);
	if (*empty)
		p->cur++;
	return node;
}

/*
 * After an entry of a container: true if another follows (the cursor past
 * the comma), false at the container's end (the cursor past it).
 */
static bool
container_next(JsonParser *p, char close, const char *expected)
{
	skip_space(p);
	if (*p->cur == ',')
	{
		p->cur++;
		return true;
	}
	if (*p->cur != close)
		parse_error(p, expected);
	p->cur++;
	return false;
}

/* A scratch stack of entries of size bytes, grown for more. */
static void *
scratch_grow(void *stack, int *max, Size size)
{
	*max = Max(64, *max * 2);
	return stack ? repalloc_huge(stack, size * *max) :
		palloc_extended(size * *max, MCXT_ALLOC_HUGE);
}

static GhlJson *
parse_object(JsonParser *p, int depth)
{
	int			first = p->nmembers;
	bool		empty;
	GhlJson    *object = container_begin(p, GHL_JSON_OBJECT, '}', &empty);
	int			n;

	if (!empty)
		do
		{
			GhlJsonMember *member;
			GhlJson    *value;
			int			position;

			skip_space(p);
			if (*p->cur != '"')
				parse_error(p, "Expected a key");
			if (p->nmembers == p->max_members)
				p->members = scratch_grow(p->members, &p->max_members,
										  sizeof(GhlJsonMember));
			member = &p->members[p->nmembers];
			member->key = parse_string(p, &member->keylen);
			member->hash = key_hash(member->key, member->keylen);
			skip_space(p);
			if (*p->cur != ':')
				parse_error(p, "Expected a colon");
			p->cur++;
			/* the value may grow the members array: index, not pointer */
			position = p->nmembers++;
			value = parse_value(p, depth);
			p->members[position].value = value;
		} while (container_next(p, '}', "Expected a comma or a closing brace"));

	keep_last_of_each_key(p, first);
	n = p->nmembers - first;
	object->len = n;
	object->val.members = parser_alloc(p, sizeof(GhlJsonMember) * Max(n, 1));
	memcpy(object->val.members, &p->members[first], sizeof(GhlJsonMember) * n);
	p->nmembers = first;
	return object;
}

/* members of one object this size or smaller are compared pairwise */
#define GHL_JSON_PAIRWISE_MEMBERS 64

static inline bool
same_key(const GhlJsonMember *a, const GhlJsonMember *b)
{
	return a->hash == b->hash && a->keylen == b->keylen &&
		memcmp(a->key, b->key, a->keylen) == 0;
}

/* qsort order of member positions: by key, then by position */
static int
member_position_cmp(const void *a, const void *b, void *arg)
{
	const GhlJsonMember *members = arg;
	int			x = *(const int *) a;
	int			y = *(const int *) b;
	const GhlJsonMember *mx = &members[x];
	const GhlJsonMember *my = &members[y];
	int			c;

	if (mx->keylen != my->keylen)
		return mx->keylen < my->keylen ? -1 : 1;
	c = memcmp(mx->key, my->key, mx->keylen);
	if (c != 0)
		return c;
	return (x > y) - (x < y);
}

/*
 * A key given twice keeps its first place and its last value, as json-c
 * did: move the later values forward and drop the later members.  The
 * API's objects have a few dozen keys, compared pairwise by hash; larger
 * ones are sorted, so that a hostile object of many keys whose hashes
 * collide costs n log n, not n squared.
 */
static void
keep_last_of_each_key(JsonParser *p, int first)
{
	GhlJsonMember *members = &p->members[first];
	int			n = p->nmembers - first;
	bool		few_dropped[GHL_JSON_PAIRWISE_MEMBERS];
	bool	   *dropped = few_dropped;
	int			kept = 0;
	int			i;
	int			j;

	if (n < 2)
		return;
	if (n > GHL_JSON_PAIRWISE_MEMBERS)
		dropped = palloc_extended(sizeof(bool) * n, MCXT_ALLOC_HUGE);
	memset(dropped, 0, sizeof(bool) * n);
	if (n <= GHL_JSON_PAIRWISE_MEMBERS)
	{
		for (i = 1; i < n; i++)
			for (j = 0; j < i; j++)
				if (!dropped[j] && same_key(&members[j], &members[i]))
				{
					members[j].value = members[i].value;
					dropped[i] = true;
					break;
				}
	}
	else
	{
		int		   *order = palloc_extended(sizeof(int) * n, MCXT_ALLOC_HUGE);

		for (i = 0; i < n; i++)
			order[i] = i;
		qsort_arg(order, n, sizeof(int), member_position_cmp, members);
		for (i = 0; i < n; i = j)
		{
			for (j = i + 1; j < n && same_key(&members[order[i]], &members[order[j]]); j++)
				dropped[order[j]] = true;
			members[order[i]].value = members[order[j - 1]].value;
		}
		pfree(order);
	}
	for (i = 0; i < n; i++)
		if (!dropped[i])
			members[kept++] = members[i];
	if (dropped != few_dropped)
		pfree(dropped);
	p->nmembers = first + kept;
}

static GhlJson *
parse_array(JsonParser *p, int depth)
{
	int			first = p->nelems;
	bool		empty;
	GhlJson    *array = container_begin(p, GHL_JSON_ARRAY, ']', &empty);
	int			n;

	if (!empty)
		do
		{
			GhlJson    *value = parse_value(p, depth);

			if (p->nelems == p->max_elems)
				p->elems = scratch_grow(p->elems, &p->max_elems, sizeof(GhlJson *));
			p->elems[p->nelems++] = value;
		} while (container_next(p, ']', "Expected a comma or a closing bracket"));

	n = p->nelems - first;
	array->len = n;
	array->val.elems = parser_alloc(p, sizeof(GhlJson *) * Max(n, 1));
	memcpy(array->val.elems, &p->elems[first], sizeof(GhlJson *) * n);
	p->nelems = first;
	return array;
}

/*
 * A number, kept as the text it came as (NUL-terminated, apart from the
 * document): -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?, or NaN,
 * Infinity, -Infinity.
 */
static GhlJson *
parse_number(JsonParser *p)
{
	char	   *start = p->cur;
	char	   *s = p->cur;
	bool		nonfinite = false;
	GhlJson    *number;
	char	   *text;

	if (*s == '-')
		s++;
	if (*s == 'N' || *s == 'I')
	{
		const char *word = *s == 'N' ? "NaN" : "Infinity";
		size_t		len = strlen(word);

		if ((*s == 'N' && s != start) ||
			(size_t) (p->end - s) < len || memcmp(s, word, len) != 0)
			parse_error(p, "Unexpected character");
		s += len;
		nonfinite = true;
	}
	else
	{
		if (*s == '0')
			s++;
		else if (*s >= '1' && *s <= '9')
			while (*s >= '0' && *s <= '9')
				s++;
		else
			parse_error(p, "Unexpected character");
		if (*s == '.')
		{
			s++;
			if (*s < '0' || *s > '9')
			{
				p->cur = s;
				parse_error(p, "Expected a digit");
			}
			while (*s >= '0' && *s <= '9')
				s++;
		}
		if (*s == 'e' || *s == 'E')
		{
			s++;
			if (*s == '+' || *s == '-')
				s++;
			if (*s < '0' || *s > '9')
			{
				p->cur = s;
				parse_error(p, "Expected a digit");
			}
			while (*s >= '0' && *s <= '9')
				s++;
		}
	}
	p->cur = s;

	number = parser_alloc(p, MAXALIGN(sizeof(GhlJson)) + (s - start) + 1);
	text = (char *) number + MAXALIGN(sizeof(GhlJson));
	memcpy(text, start, s - start);
	text[s - start] = '\0';
	number->type = GHL_JSON_NUMBER;
	number->nonfinite = nonfinite;
	number->len = s - start;
	number->val.text = text;
	return number;
}

static inline int
hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* the four hex digits after "\u" at s, or -1 */
static int
unicode_escape(const char *s, const char *end)
{
	int			v = 0;
	int			i;

	if (end - s < 6 || s[0] != '\\' || s[1] != 'u')
		return -1;
	for (i = 2; i < 6; i++)
	{
		int			h = hex_value(s[i]);

		if (h < 0)
			return -1;
		v = (v << 4) | h;
	}
	return v;
}

/*
 * The string at the cursor (on its opening quote), decoded in place and
 * NUL-terminated where its closing quote was; *len is its length in bytes,
 * which may include NULs from "\u0000".
 */
static char *
parse_string(JsonParser *p, int *len)
{
	char	   *start = ++p->cur;
	char	   *s = start;
	char	   *out;

	/* most strings have no escape: find the end, decode nothing */
	while (*s != '"' && *s != '\\')
	{
		if (s >= p->end)
		{
			p->cur = s;
			parse_error(p, "Unterminated string");
		}
		s++;
	}
	out = s;
	while (*s != '"')
	{
		if (s >= p->end)
		{
			p->cur = s;
			parse_error(p, "Unterminated string");
		}
		if (*s != '\\')
		{
			*out++ = *s++;
			continue;
		}
		switch (s[1])
		{
			case '"':
			case '\\':
			case '/':
				*out++ = s[1];
				break;
			case 'b':
				*out++ = '\b';
				break;
			case 'f':
				*out++ = '\f';
				break;
			case 'n':
				*out++ = '\n';
				break;
			case 'r':
				*out++ = '\r';
				break;
			case 't':
				*out++ = '\t';
				break;
			case 'u':
				{
					int			c = unicode_escape(s, p->end);

					if (c < 0)
					{
						p->cur = s;
						parse_error(p, "Invalid \\u escape");
					}
					if (c >= 0xD800 && c <= 0xDBFF)
					{
						int			low = unicode_escape(s + 6, p->end);

						if (low >= 0xDC00 && low <= 0xDFFF)
						{
							c = 0x10000 + ((c - 0xD800) << 10) + (low - 0xDC00);
							s += 6;
						}
						else
							c = 0xFFFD;
					}
					else if (c >= 0xDC00 && c <= 0xDFFF)
						c = 0xFFFD;
					unicode_to_utf8((pg_wchar) c, (unsigned char *) out);
					out += pg_utf_mblen((unsigned char *) out);
					s += 6;
					continue;
				}
			default:
				p->cur = s;
				parse_error(p, "Invalid escape");
		}
		s += 2;
	}
	*out = '\0';
	*len = out - start;
	p->cur = s + 1;
	return start;
}

/* ----------------------------------------------------------------
 * Reading and changing a tree
 * ----------------------------------------------------------------
 */

/* The position of key among an object's members, or -1. */
static int
member_position(const GhlJson *object, const char *key)
{
	int			keylen;
	uint32		hash;
	int			i;

	if (object == NULL || object->type != GHL_JSON_OBJECT)
		return -1;
	keylen = strlen(key);
	hash = key_hash(key, keylen);
	for (i = 0; i < object->len; i++)
	{
		const GhlJsonMember *member = &object->val.members[i];

		if (member->hash == hash && member->keylen == keylen &&
			memcmp(member->key, key, keylen) == 0)
			return i;
	}
	return -1;
}

/* The value of key in an object, or NULL if it has none (or is no object). */
GhlJson *
ghl_json_get(const GhlJson *object, const char *key)
{
	int			i = member_position(object, key);

	return i < 0 ? NULL : object->val.members[i].value;
}

/*
 * The same, trying first the member at *at, where the key was last found,
 * and leaving there where it is now.  The API writes the objects of a kind
 * with their keys in one order, so that a scan finds most fields of most
 * rows at once, without hashing the key.
 */
GhlJson *
ghl_json_get_at(const GhlJson *object, const char *key, int *at)
{
	if (object != NULL && object->type == GHL_JSON_OBJECT &&
		*at >= 0 && *at < object->len)
	{
		const GhlJsonMember *member = &object->val.members[*at];

		if (strcmp(member->key, key) == 0 && member->keylen == (int) strlen(key))
			return member->value;
	}
	*at = member_position(object, key);
	return *at < 0 ? NULL : object->val.members[*at].value;
}

/* Remove key from an object, if it has it. */
void
ghl_json_remove(GhlJson *object, const char *key)
{
	int			i = member_position(object, key);

	if (i < 0)
		return;
	memmove(&object->val.members[i], &object->val.members[i + 1],
			sizeof(GhlJsonMember) * (object->len - i - 1));
	object->len--;
}

/*
 * Set key of an object to value (a null, true or false of
 * ghl_json_scalar()), in place or as a new last member allocated in cxt.
 */
void
ghl_json_put(GhlJson *object, const char *key, GhlJson *value, MemoryContext cxt)
{
	int			i = member_position(object, key);
	int			keylen = strlen(key);
	GhlJsonMember *members;

	Assert(object->type == GHL_JSON_OBJECT);
	if (i >= 0)
	{
		object->val.members[i].value = value;
		return;
	}
	members = MemoryContextAlloc(cxt, sizeof(GhlJsonMember) * (object->len + 1));
	memcpy(members, object->val.members, sizeof(GhlJsonMember) * object->len);
	members[object->len].key = MemoryContextStrdup(cxt, key);
	members[object->len].keylen = keylen;
	members[object->len].hash = key_hash(key, keylen);
	members[object->len].value = value;
	object->val.members = members;
	object->len++;
}

/* the shared, read-only null, true and false */
GhlJson *
ghl_json_scalar(GhlJsonType type, bool boolean)
{
	if (type == GHL_JSON_NULL)
		return (GhlJson *) &json_null;
	Assert(type == GHL_JSON_BOOL);
	return (GhlJson *) (boolean ? &json_true : &json_false);
}

/* a string's bytes as JSON, escaped as json-c wrote them */
static void
write_string(StringInfo buf, const char *s, int len)
{
	const char *run = s;
	const char *end = s + len;

	appendStringInfoCharMacro(buf, '"');
	for (; s < end; s++)
	{
		unsigned char c = (unsigned char) *s;
		const char *escape;
		char		hex[7];

		if (c >= 0x20 && c != '"' && c != '\\' && c != '/')
			continue;
		switch (c)
		{
			case '"':
				escape = "\\\"";
				break;
			case '\\':
				escape = "\\\\";
				break;
			case '/':
				escape = "\\/";
				break;
			case '\b':
				escape = "\\b";
				break;
			case '\f':
				escape = "\\f";
				break;
			case '\n':
				escape = "\\n";
				break;
			case '\r':
				escape = "\\r";
				break;
			case '\t':
				escape = "\\t";
				break;
			default:
				snprintf(hex, sizeof(hex), "\\u%04x", c);
				escape = hex;
				break;
		}
		appendBinaryStringInfo(buf, run, s - run);
		appendStringInfoString(buf, escape);
		run = s + 1;
	}
	appendBinaryStringInfo(buf, run, end - run);
	appendStringInfoCharMacro(buf, '"');
}

/*
 * A value as compact JSON text (no white space, as json-c's plain form),
 * appended to buf.  Strings are written as they are held: checking them
 * is the caller's.
 */
void
ghl_json_write(StringInfo buf, const GhlJson *value)
{
	int			i;

	check_stack_depth();
	switch (value->type)
	{
		case GHL_JSON_NULL:
			appendStringInfoString(buf, "null");
			break;
		case GHL_JSON_BOOL:
			appendStringInfoString(buf, value->val.boolean ? "true" : "false");
			break;
		case GHL_JSON_NUMBER:
			appendBinaryStringInfo(buf, value->val.text, value->len);
			break;
		case GHL_JSON_STRING:
			write_string(buf, value->val.text, value->len);
			break;
		case GHL_JSON_ARRAY:
			appendStringInfoCharMacro(buf, '[');
			for (i = 0; i < value->len; i++)
			{
				if (i > 0)
					appendStringInfoCharMacro(buf, ',');
				ghl_json_write(buf, value->val.elems[i]);
			}
			appendStringInfoCharMacro(buf, ']');
			break;
		case GHL_JSON_OBJECT:
			appendStringInfoCharMacro(buf, '{');
			for (i = 0; i < value->len; i++)
			{
				const GhlJsonMember *member = &value->val.members[i];

				if (i > 0)
					appendStringInfoCharMacro(buf, ',');
				write_string(buf, member->key, member->keylen);
				appendStringInfoCharMacro(buf, ':');
				ghl_json_write(buf, member->value);
			}
			appendStringInfoCharMacro(buf, '}');
			break;
	}
}

/*
 * A number that is an integer in int64's range, as json-c read integers:
 * no fraction, no exponent.
 */
bool
ghl_json_int64(const GhlJson *value, int64 *result)
{
	const char *s;
	bool		negative;
	uint64		v = 0;

	if (value->type != GHL_JSON_NUMBER || value->nonfinite ||
		strpbrk(value->val.text, ".eE") != NULL)
		return false;
	s = value->val.text;
	negative = (*s == '-');
	if (negative)
		s++;
	for (; *s; s++)
	{
		if (v > (PG_UINT64_MAX - 9) / 10)
			return false;
		v = v * 10 + (*s - '0');
	}
	if (negative ? v > (uint64) PG_INT64_MAX + 1 : v > (uint64) PG_INT64_MAX)
		return false;
	*result = negative ? (int64) (0 - v) : (int64) v;
	return true;
}

/* what a JSON value is, for messages */
const char *
ghl_json_type_name(const GhlJson *value)
{
	switch (value->type)
	{
		case GHL_JSON_NULL:
			return "null";
		case GHL_JSON_BOOL:
			return "boolean";
		case GHL_JSON_NUMBER:
			return "number";
		case GHL_JSON_STRING:
			return "string";
		case GHL_JSON_ARRAY:
			return "array";
		case GHL_JSON_OBJECT:
			return "object";
	}
	return "unknown";
}
