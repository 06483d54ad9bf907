/*-------------------------------------------------------------------------
 *
 * webhook_keys.c
 *		  The trusted keys of webhook deliveries, ghl_fdw.webhook_keys, and
 *		  signature verification with OpenSSL.
 *
 * HighLevel signs the exact bytes of every delivery: with Ed25519 in the
 * X-GHL-Signature header, and formerly with RSA PKCS#1 v1.5 over SHA-256
 * in x-wh-signature.  A signature is good when any enabled key of its
 * algorithm verifies it, so a new key can be added before the old one is
 * retired.  Parsing a PEM key costs far more than a verification, so each
 * backend keeps the enabled keys parsed, and triggers on the table tell
 * every backend to read them again when it changes.
 *
 * OpenSSL allocates with malloc: parsed keys are freed when the cache is
 * rebuilt, and nothing between an allocation and its release can raise.
 *
 * IDENTIFICATION
 *		  src/webhook_keys.c
 *
 *-------------------------------------------------------------------------
 */
#include "ghl_fdw.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "commands/trigger.h"
#include "common/base64.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/rel.h"

/* longest signature header accepted: base64 of a 4096-bit RSA signature */
#define GHL_SIGNATURE_MAX_B64	1024

/* The signature algorithms a key may have. */
typedef struct GhlSignatureAlgorithm
{
	const char *name;			/* as in webhook_keys.algorithm */
	const char *key_label;		/* the kind of key, as in messages */
	int			key_type;		/* EVP_PKEY_ED25519, EVP_PKEY_RSA */
	int			min_bits;		/* weakest key accepted */
	bool		sha256;			/* digest first (RSA), or sign the data */
	int			signature_len;	/* fixed length, or 0: the key's size */
} GhlSignatureAlgorithm;

static const GhlSignatureAlgorithm signature_algorithms[] = {
	{"ed25519", "an Ed25519", EVP_PKEY_ED25519, 0, false, 64},
	{"rsa-sha256", "an RSA", EVP_PKEY_RSA, 2048, true, 0},
};

/* One enabled key of the table, parsed. */
typedef struct GhlTrustedKey
{
	char	   *key_id;
	const GhlSignatureAlgorithm *algorithm;
	EVP_PKEY   *pkey;
} GhlTrustedKey;

/* The backend's parsed copy of the enabled keys. */
static MemoryContext KeyCacheContext = NULL;
static GhlTrustedKey *trusted_keys = NULL;
static int	ntrusted_keys = 0;
static bool trusted_keys_valid = false;
static Oid	trusted_keys_relid = InvalidOid;

PG_FUNCTION_INFO_V1(ghl_fdw_webhook_key_check);
PG_FUNCTION_INFO_V1(ghl_fdw_webhook_keys_changed);

/*
 * The algorithm of a key by its name in the table, or NULL.
 */
static const GhlSignatureAlgorithm *
find_algorithm(const char *name)
{
	int			i;

	for (i = 0; i < lengthof(signature_algorithms); i++)
	{
		if (strcmp(signature_algorithms[i].name, name) == 0)
			return &signature_algorithms[i];
	}
	return NULL;
}

/*
 * OpenSSL's reason for the last failure, for errdetail; clears its queue
 * so that a later, unrelated failure does not report a stale reason.
 */
static char *
openssl_reason(void)
{
	unsigned long code = ERR_get_error();
	char		buf[256];

	ERR_clear_error();
	if (code == 0)
		return pstrdup("no reason given");
	ERR_error_string_n(code, buf, sizeof(buf));
	return pstrdup(buf);
}

/*
 * Parse a PEM public key and check that it is a key of the algorithm and
 * strong enough.  A bad key is reported at elevel naming key_id: ERROR
 * when a row is written, WARNING when the cache skips a row written past
 * the check (with the trigger disabled).  Returns NULL after a WARNING.
 */
static EVP_PKEY *
parse_public_key(const GhlSignatureAlgorithm *algorithm, const char *pem,
				 const char *key_id, int elevel)
{
	BIO		   *bio;
	EVP_PKEY   *pkey;
	bool		parsed;
	int			key_type = 0;
	int			bits = 0;
	char	   *reason = NULL;

	ERR_clear_error();
	bio = BIO_new_mem_buf(pem, -1);
	if (bio == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	pkey = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
	BIO_free(bio);

	parsed = pkey != NULL;
	if (parsed)
	{
		key_type = EVP_PKEY_get_base_id(pkey);
		bits = EVP_PKEY_get_bits(pkey);
		if (key_type == algorithm->key_type && bits >= algorithm->min_bits)
			return pkey;
		EVP_PKEY_free(pkey);
	}
	else
		reason = openssl_reason();

	if (!parsed)
		ereport(elevel,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("public key of webhook key \"%s\" is not a PEM public key", key_id),
				 errdetail("OpenSSL: %s.", reason),
				 errhint("Give the SubjectPublicKeyInfo PEM (\"-----BEGIN PUBLIC KEY-----\") of %s key.",
						 algorithm->key_label)));
	else if (key_type != algorithm->key_type)
		ereport(elevel,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("public key of webhook key \"%s\" is not %s key", key_id,
						algorithm->key_label),
				 errhint("The algorithm %s needs %s key.", algorithm->name,
						 algorithm->key_label)));
	else
		ereport(elevel,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("public key of webhook key \"%s\" is too short", key_id),
				 errdetail("It has %d bits; at least %d are needed.",
						   bits, algorithm->min_bits)));
	return NULL;
}

/* Free the parsed keys; the table is read again on next use. */
static void
release_trusted_keys(void)
{
	int			i;

	for (i = 0; i < ntrusted_keys; i++)
		EVP_PKEY_free(trusted_keys[i].pkey);
	ntrusted_keys = 0;
	trusted_keys = NULL;
	if (KeyCacheContext)
		MemoryContextReset(KeyCacheContext);
}

/*
 * Relcache callback: the triggers on webhook_keys send an invalidation of
 * the table when its rows change (an ordinary write sends none), as does
 * any DDL on it.
 */
static void
invalidate_trusted_keys(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == trusted_keys_relid)
		trusted_keys_valid = false;
}

/*
 * Read and parse the enabled keys, as the table's owner: the caller needs
 * no privilege on it.  The cache is marked valid before reading, so an
 * invalidation that arrives during the read makes the next call read
 * again.
 */
static void
load_trusted_keys(void)
{
	static SPIPlanPtr plan = NULL;
	Oid			owner;
	uint64		i;

	if (KeyCacheContext == NULL)
	{
		KeyCacheContext = AllocSetContextCreate(TopMemoryContext,
												"ghl_fdw webhook keys",
												ALLOCSET_SMALL_SIZES);
		CacheRegisterRelcacheCallback(invalidate_trusted_keys, (Datum) 0);
	}
	release_trusted_keys();
	trusted_keys_relid = ghl_webhook_table("webhook_keys", &owner);
	trusted_keys_valid = true;

	SPI_connect();
	PG_TRY();
	{
		ghl_webhook_execute(owner, &plan,
							"SELECT key_id, algorithm, public_key"
							" FROM ghl_fdw.webhook_keys WHERE enabled",
							0, NULL, NULL, NULL);
		trusted_keys = MemoryContextAllocZero(KeyCacheContext,
											  sizeof(GhlTrustedKey) * Max(SPI_processed, 1));
		for (i = 0; i < SPI_processed; i++)
		{
			HeapTuple	tuple = SPI_tuptable->vals[i];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			char	   *key_id = SPI_getvalue(tuple, desc, 1);
			const GhlSignatureAlgorithm *algorithm =
				find_algorithm(SPI_getvalue(tuple, desc, 2));
			EVP_PKEY   *pkey;

			if (algorithm == NULL)
				continue;		/* the table's CHECK makes this impossible */
			pkey = parse_public_key(algorithm, SPI_getvalue(tuple, desc, 3),
									key_id, WARNING);
			if (pkey == NULL)
				continue;
			trusted_keys[ntrusted_keys].key_id =
				MemoryContextStrdup(KeyCacheContext, key_id);
			trusted_keys[ntrusted_keys].algorithm = algorithm;
			trusted_keys[ntrusted_keys].pkey = pkey;
			ntrusted_keys++;
		}
	}
	PG_CATCH();
	{
		release_trusted_keys();
		trusted_keys_valid = false;
		PG_RE_THROW();
	}
	PG_END_TRY();
	SPI_finish();
}

/*
 * Whether one key verifies a signature over data.  OpenSSL's objects live
 * only inside this function and nothing in it can raise.
 */
static bool
key_verifies(const GhlTrustedKey *key, const unsigned char *signature,
			 size_t signature_len, const char *data, size_t len)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	bool		ok;

	if (ctx == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	ok = EVP_DigestVerifyInit(ctx, NULL,
							  key->algorithm->sha256 ? EVP_sha256() : NULL,
							  NULL, key->pkey) == 1 &&
		EVP_DigestVerify(ctx, signature, signature_len,
						 (const unsigned char *) data, len) == 1;
	EVP_MD_CTX_free(ctx);
	ERR_clear_error();
	return ok;
}

/*
 * Check a base64 signature of the named algorithm over data against the
 * enabled keys.  On success *key_id names the key that verified it.
 */
GhlSignatureCheck
ghl_webhook_verify(const char *algorithm_name, const char *signature,
				   const char *data, size_t len, char **key_id)
{
	const GhlSignatureAlgorithm *algorithm = find_algorithm(algorithm_name);
	int			b64_len = strlen(signature);
	unsigned char *raw;
	int			raw_len;
	bool		any_key = false;
	int			i;

	if (algorithm == NULL)
		elog(ERROR, "unknown webhook signature algorithm \"%s\"", algorithm_name);
	*key_id = NULL;

	if (b64_len == 0 || b64_len > GHL_SIGNATURE_MAX_B64)
		return GHL_SIGNATURE_MALFORMED;
	raw = palloc(pg_b64_dec_len(b64_len));
	raw_len = pg_b64_decode(signature, b64_len, (char *) raw,
							pg_b64_dec_len(b64_len));
	if (raw_len <= 0 ||
		(algorithm->signature_len > 0 && raw_len != algorithm->signature_len))
		return GHL_SIGNATURE_MALFORMED;

	if (!trusted_keys_valid)
		load_trusted_keys();
	for (i = 0; i < ntrusted_keys; i++)
	{
		const GhlTrustedKey *key = &trusted_keys[i];

		if (key->algorithm != algorithm)
			continue;
		any_key = true;
		if (key_verifies(key, raw, raw_len, data, len))
		{
			*key_id = pstrdup(key->key_id);
			return GHL_SIGNATURE_VERIFIED;
		}
	}
	return any_key ? GHL_SIGNATURE_MISMATCH : GHL_SIGNATURE_NO_KEY;
}

/*
 * Row trigger on webhook_keys: a key that cannot verify anything is
 * refused when it is written, not discovered when a delivery fails.
 */
Datum
ghl_fdw_webhook_key_check(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	HeapTuple	tuple;
	TupleDesc	desc;
	char	   *key_id;
	char	   *algorithm_name;
	char	   *pem;
	const GhlSignatureAlgorithm *algorithm;

	if (!CALLED_AS_TRIGGER(fcinfo) ||
		!TRIGGER_FIRED_BEFORE(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) ||
		TRIGGER_FIRED_BY_DELETE(trigdata->tg_event))
		elog(ERROR, "ghl_fdw_webhook_key_check must run before INSERT or UPDATE of each row");

	tuple = TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) ?
		trigdata->tg_newtuple : trigdata->tg_trigtuple;
	desc = RelationGetDescr(trigdata->tg_relation);
	key_id = SPI_getvalue(tuple, desc, SPI_fnumber(desc, "key_id"));
	algorithm_name = SPI_getvalue(tuple, desc, SPI_fnumber(desc, "algorithm"));
	pem = SPI_getvalue(tuple, desc, SPI_fnumber(desc, "public_key"));

	/* NULLs are for the table's constraints to report */
	if (key_id == NULL || algorithm_name == NULL || pem == NULL)
		return PointerGetDatum(tuple);
	algorithm = find_algorithm(algorithm_name);
	if (algorithm == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("webhook key \"%s\" has an unknown algorithm \"%s\"",
						key_id, algorithm_name),
				 errhint("Use ed25519 (X-GHL-Signature) or rsa-sha256 (the legacy x-wh-signature).")));
	EVP_PKEY_free(parse_public_key(algorithm, pem, key_id, ERROR));
	return PointerGetDatum(tuple);
}

/*
 * Statement trigger on webhook_keys: make every backend, this one at once
 * and the others when the transaction commits, read the keys again.
 */
Datum
ghl_fdw_webhook_keys_changed(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "ghl_fdw_webhook_keys_changed must run as a trigger");
	CacheInvalidateRelcache(trigdata->tg_relation);
	return PointerGetDatum(NULL);
}
