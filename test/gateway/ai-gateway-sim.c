/*-------------------------------------------------------------------------
 *
 * ai-gateway-sim.c
 *	  Deterministic OpenAI-compatible AI gateway simulator (test equipment).
 *
 * This file owns the whole simulator: command line, HTTP server setup on
 * libmicrohttpd (one thread per connection, so every delay is a plain sleep
 * in the connection's own thread), request parsing with jansson, the
 * behaviour scheme selected from the model name and the endpoint prefix,
 * plain and streamed (SSE) answers, the per-key attempt counters and the
 * request journal.  See README.md in this directory for the behaviour table.
 *
 * Responses are written by hand into growable buffers (no JSON tree is built
 * for output) because this server must sustain tens of thousands of small
 * requests per second on two cores.
 *
 * test/gateway/ai-gateway-sim.c
 *
 *-------------------------------------------------------------------------
 */
#define _GNU_SOURCE

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <microhttpd.h>

#define SIM_MAX_BODY		(64u * 1024 * 1024)	/* largest accepted request body */
#define SIM_JOURNAL_MAX		1000000				/* journal entries kept */
#define SIM_HANG_MAX_MS		600000				/* hang gives up after this */
#define SIM_HANG_POLL_MS	20					/* hang checks the socket this often */
#define SIM_MAX_PIECES		64					/* SSE content pieces, normally */
#define SIM_MAX_UTF8_PIECES	256					/* utf8 two-character pieces */
#define SIM_MAX_TOKENS		1000000				/* cap for tokens-<n> */
#define SIM_MAX_BIGREPLY	(512L * 1024 * 1024)	/* cap for bigreply-<bytes> */
#define SIM_MAX_MS			86400000L			/* cap for any delay option */
#define SIM_INLINE_BODY		1024				/* bodies up to this need no malloc */
#define SIM_TRICKLE_BYTES	(16 * 1024)			/* a trickled stream's writes */

/* ----------------------------------------------------------------
 *		configuration and global state
 * ----------------------------------------------------------------
 */
typedef struct SimConfig
{
	long		port;
	const char *bind_addr;
	const char *port_file;
	long		latency_ms;
	double		fault_5xx;
	double		fault_429;
	long		fault_retry_after;
	uint64_t	seed;
	bool		journal;
	bool		quiet;
} SimConfig;

static SimConfig cfg = {
	.port = 18080,
	.bind_addr = "127.0.0.1",
	.port_file = NULL,
	.latency_ms = 0,
	.fault_5xx = 0.0,
	.fault_429 = 0.0,
	.fault_retry_after = 1,
	.seed = 42,
	.journal = true,
	.quiet = false,
};

/* Written once at shutdown; every sleep polls its read end to wake early. */
static int	stop_pipe[2] = {-1, -1};
static atomic_bool stopping = false;

/* Port of the listener that never accepts (see open_unreachable), as text. */
static char unreachable_port[8];

/* Global request counter (x-request-id, chatcmpl id, journal seq). */
static _Atomic uint64_t request_seq = 0;

/* splitmix64 state: a counter, so one atomic add gives the next draw. */
static _Atomic uint64_t rng_state = 0;

/* ----------------------------------------------------------------
 *		small utilities
 * ----------------------------------------------------------------
 */

/* Abort on out-of-memory: test equipment must not limp on silently. */
static void *
xmalloc(size_t n)
{
	void	   *p = malloc(n ? n : 1);

	if (p == NULL)
	{
		fprintf(stderr, "ai-gateway-sim: out of memory\n");
		abort();
	}
	return p;
}

/* realloc counterpart of xmalloc. */
static void *
xrealloc(void *p, size_t n)
{
	p = realloc(p, n ? n : 1);
	if (p == NULL)
	{
		fprintf(stderr, "ai-gateway-sim: out of memory\n");
		abort();
	}
	return p;
}

/* Growable byte buffer; data is always NUL-terminated and malloc'd. */
typedef struct SBuf
{
	char	   *data;
	size_t		len;
	size_t		cap;
} SBuf;

/* Initialise a buffer with room for cap bytes. */
static void
sb_init(SBuf *sb, size_t cap)
{
	sb->cap = cap < 16 ? 16 : cap;
	sb->data = xmalloc(sb->cap);
	sb->len = 0;
	sb->data[0] = '\0';
}

/* Make room for extra more bytes plus the terminator. */
static void
sb_reserve(SBuf *sb, size_t extra)
{
	size_t		need = sb->len + extra + 1;

	if (need <= sb->cap)
		return;
	while (sb->cap < need)
		sb->cap *= 2;
	sb->data = xrealloc(sb->data, sb->cap);
}

/* Append n raw bytes. */
static void
sb_putn(SBuf *sb, const char *s, size_t n)
{
	sb_reserve(sb, n);
	memcpy(sb->data + sb->len, s, n);
	sb->len += n;
	sb->data[sb->len] = '\0';
}

/* Append a C string. */
static void
sb_puts(SBuf *sb, const char *s)
{
	sb_putn(sb, s, strlen(s));
}

/* Append printf-formatted text. */
static void __attribute__((format(printf, 2, 3)))
sb_printf(SBuf *sb, const char *fmt,...)
{
	va_list		ap;
	int			n;

	for (;;)
	{
		size_t		room = sb->cap - sb->len;

		va_start(ap, fmt);
		n = vsnprintf(sb->data + sb->len, room, fmt, ap);
		va_end(ap);
		if (n < 0)
			abort();
		if ((size_t) n < room)
		{
			sb->len += (size_t) n;
			return;
		}
		sb_reserve(sb, (size_t) n);
	}
}

/* Append s (n bytes, valid UTF-8) as a quoted JSON string. */
static void
sb_json_str(SBuf *sb, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	size_t		i;
	size_t		run = 0;

	/* worst case every byte becomes \u00XX; reserving exactly avoids churn */
	sb_reserve(sb, n + 2);
	sb->data[sb->len++] = '"';
	for (i = 0; i < n; i++)
	{
		unsigned char c = (unsigned char) s[i];

		if (c >= 0x20 && c != '"' && c != '\\')
			continue;
		/* flush the clean run before this byte in one copy */
		sb_putn(sb, s + run, i - run);
		run = i + 1;
		switch (c)
		{
			case '"':
				sb_putn(sb, "\\\"", 2);
				break;
			case '\\':
				sb_putn(sb, "\\\\", 2);
				break;
			case '\n':
				sb_putn(sb, "\\n", 2);
				break;
			case '\r':
				sb_putn(sb, "\\r", 2);
				break;
			case '\t':
				sb_putn(sb, "\\t", 2);
				break;
			default:
				{
					char		esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};

					sb_putn(sb, esc, 6);
				}
				break;
		}
	}
	sb_putn(sb, s + run, n - run);
	sb_putn(sb, "\"", 1);
}

/* Append a C string as a quoted JSON string, or null when s is NULL. */
static void
sb_json_cstr(SBuf *sb, const char *s)
{
	if (s == NULL)
		sb_puts(sb, "null");
	else
		sb_json_str(sb, s, strlen(s));
}

/* True for the ASCII whitespace that separates words. */
static inline bool
is_space(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* Number of whitespace-separated words in s[0..n). */
static long
count_words(const char *s, size_t n)
{
	long		words = 0;
	bool		in_word = false;
	size_t		i;

	for (i = 0; i < n; i++)
	{
		bool		sp = is_space((unsigned char) s[i]);

		if (!sp && !in_word)
			words++;
		in_word = !sp;
	}
	return words;
}

/* Parse s[0..n) as a decimal number in [0, max]; false if not exactly that. */
static bool
parse_num(const char *s, size_t n, long max, long *out)
{
	long		v = 0;
	size_t		i;

	if (n == 0 || n > 12)
		return false;
	for (i = 0; i < n; i++)
	{
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (s[i] - '0');
	}
	if (v > max)
		return false;
	*out = v;
	return true;
}

/* True when s[0..n) starts with the C string prefix. */
static inline bool
has_prefix(const char *s, size_t n, const char *prefix)
{
	size_t		pl = strlen(prefix);

	return n >= pl && memcmp(s, prefix, pl) == 0;
}

/* True when s[0..n) equals the C string word. */
static inline bool
equals(const char *s, size_t n, const char *word)
{
	return strlen(word) == n && memcmp(s, word, n) == 0;
}

/* Milliseconds on the monotonic clock. */
static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * Sleep ms milliseconds, waking at once at shutdown.  Polling the stop pipe
 * instead of nanosleep lets MHD_stop_daemon join connection threads quickly.
 * Returns false if interrupted by shutdown.
 */
static bool
sim_sleep_ms(long ms)
{
	int64_t		deadline = now_ms() + ms;
	struct pollfd pfd = {.fd = stop_pipe[0],.events = POLLIN};

	for (;;)
	{
		int64_t		left = deadline - now_ms();

		if (atomic_load(&stopping))
			return false;
		if (left <= 0)
			return true;
		if (poll(&pfd, 1, left > INT_MAX ? INT_MAX : (int) left) > 0)
			return false;
	}
}

/* Next uniform double in [0,1) from the shared splitmix64 sequence. */
static double
rng_next(void)
{
	uint64_t	z = atomic_fetch_add(&rng_state, UINT64_C(0x9E3779B97F4A7C15)) +
		UINT64_C(0x9E3779B97F4A7C15);

	z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
	z ^= z >> 31;
	return (double) (z >> 11) * 0x1.0p-53;
}

/* 64-bit FNV-1a hash, good enough for the attempt table. */
static uint64_t
hash_bytes(const char *s, size_t n)
{
	uint64_t	h = UINT64_C(0xcbf29ce484222325);
	size_t		i;

	for (i = 0; i < n; i++)
	{
		h ^= (unsigned char) s[i];
		h *= UINT64_C(0x100000001b3);
	}
	return h;
}

/* ----------------------------------------------------------------
 *		attempt counters per (model, prompt, prefix)
 * ----------------------------------------------------------------
 */
typedef struct AttemptEntry
{
	struct AttemptEntry *next;
	uint64_t	hash;
	long		count;
	size_t		keylen;
	char		key[];		/* model \0 prompt \0 prefix, not terminated */
} AttemptEntry;

static pthread_mutex_t attempt_lock = PTHREAD_MUTEX_INITIALIZER;
static AttemptEntry **attempt_buckets = NULL;
static size_t attempt_nbuckets = 0;
static size_t attempt_count = 0;

/* Double the bucket array so chains stay short. */
static void
attempts_grow(void)
{
	size_t		nb = attempt_nbuckets ? attempt_nbuckets * 2 : 1024;
	AttemptEntry **b = xmalloc(nb * sizeof(*b));
	size_t		i;

	memset(b, 0, nb * sizeof(*b));
	for (i = 0; i < attempt_nbuckets; i++)
	{
		AttemptEntry *e = attempt_buckets[i];

		while (e)
		{
			AttemptEntry *next = e->next;

			e->next = b[e->hash & (nb - 1)];
			b[e->hash & (nb - 1)] = e;
			e = next;
		}
	}
	free(attempt_buckets);
	attempt_buckets = b;
	attempt_nbuckets = nb;
}

/*
 * Count one more attempt for the key and return its 1-based number.  The
 * full key is stored (not just a hash) so counting is exact.
 */
static long
attempts_bump(const char *model, size_t mlen, const char *prompt, size_t plen,
			  const char *prefix, size_t xlen)
{
	size_t		keylen = mlen + 1 + plen + 1 + xlen;
	char		small[512];
	char	   *key = keylen <= sizeof(small) ? small : xmalloc(keylen);
	uint64_t	h;
	AttemptEntry *e;
	long		result;

	memcpy(key, model, mlen);
	key[mlen] = '\0';
	memcpy(key + mlen + 1, prompt, plen);
	key[mlen + 1 + plen] = '\0';
	memcpy(key + mlen + 1 + plen + 1, prefix, xlen);
	h = hash_bytes(key, keylen);

	pthread_mutex_lock(&attempt_lock);
	if (attempt_nbuckets == 0 || attempt_count >= attempt_nbuckets * 2)
		attempts_grow();
	for (e = attempt_buckets[h & (attempt_nbuckets - 1)]; e; e = e->next)
	{
		if (e->hash == h && e->keylen == keylen && memcmp(e->key, key, keylen) == 0)
			break;
	}
	if (e == NULL)
	{
		e = xmalloc(sizeof(AttemptEntry) + keylen);
		e->hash = h;
		e->count = 0;
		e->keylen = keylen;
		memcpy(e->key, key, keylen);
		e->next = attempt_buckets[h & (attempt_nbuckets - 1)];
		attempt_buckets[h & (attempt_nbuckets - 1)] = e;
		attempt_count++;
	}
	result = ++e->count;
	pthread_mutex_unlock(&attempt_lock);

	if (key != small)
		free(key);
	return result;
}

/* Forget all attempt counters (POST /journal/reset). */
static void
attempts_reset(void)
{
	size_t		i;

	pthread_mutex_lock(&attempt_lock);
	for (i = 0; i < attempt_nbuckets; i++)
	{
		AttemptEntry *e = attempt_buckets[i];

		while (e)
		{
			AttemptEntry *next = e->next;

			free(e);
			e = next;
		}
		attempt_buckets[i] = NULL;
	}
	attempt_count = 0;
	pthread_mutex_unlock(&attempt_lock);
}

/* ----------------------------------------------------------------
 *		journal
 * ----------------------------------------------------------------
 */
typedef struct JournalEntry
{
	uint64_t	seq;
	size_t		len;
	char	   *rest;		/* TSV columns after seq, with trailing newline */
} JournalEntry;

static pthread_mutex_t journal_lock = PTHREAD_MUTEX_INITIALIZER;
static JournalEntry *journal_ring = NULL;	/* SIM_JOURNAL_MAX slots */
static size_t journal_head = 0;		/* index of the oldest entry */
static size_t journal_count = 0;

/* Append a journal column: tab first, tabs/newlines turned into spaces. */
static void
journal_col(SBuf *sb, const char *s, size_t n)
{
	size_t		i;

	sb_reserve(sb, n + 1);
	sb->data[sb->len++] = '\t';
	if (n == 0)
	{
		sb->data[sb->len++] = '-';
		sb->data[sb->len] = '\0';
		return;
	}
	for (i = 0; i < n; i++)
	{
		char		c = s[i];

		sb->data[sb->len++] = (c == '\t' || c == '\n' || c == '\r') ? ' ' : c;
	}
	sb->data[sb->len] = '\0';
}

/* Everything the journal records about one /v1 request. */
typedef struct JournalInfo
{
	const char *prefix;
	size_t		prefix_len;
	const char *method;
	const char *tail;
	const char *model;		/* NULL -> "-" */
	size_t		model_len;
	long		attempt;
	int			status;
	bool		stream;
	size_t		body_bytes;
	unsigned	client_port;
	const char *auth;		/* NULL -> "-" */
	struct MHD_Connection *conn;	/* for its x-* headers */
} JournalInfo;

/* MHD iterator: append an x-* request header to the SBuf as "name: value; ". */
static enum MHD_Result
journal_x_header(void *cls, enum MHD_ValueKind kind, const char *key,
				 const char *value)
{
	SBuf	   *sb = cls;

	(void) kind;
	if (strncasecmp(key, "x-", 2) == 0)
	{
		if (sb->len > 0)
			sb_putn(sb, "; ", 2);
		sb_putn(sb, key, strlen(key));
		sb_putn(sb, ": ", 2);
		sb_putn(sb, value ? value : "", value ? strlen(value) : 0);
	}
	return MHD_YES;
}

/*
 * Allocate the next request sequence number and record the request.  The
 * number is taken under the journal lock so the journal is ordered by seq.
 */
static uint64_t
journal_record(const JournalInfo *ji)
{
	SBuf		sb;
	uint64_t	seq;
	char		num[64];
	int			n;

	if (!cfg.journal)
		return atomic_fetch_add(&request_seq, 1) + 1;

	/* format outside the lock; the seq column is added when reading */
	sb_init(&sb, 128 + ji->model_len);
	journal_col(&sb, ji->prefix, ji->prefix_len);
	journal_col(&sb, ji->method, strlen(ji->method));
	journal_col(&sb, ji->tail, strlen(ji->tail));
	journal_col(&sb, ji->model ? ji->model : "", ji->model ? ji->model_len : 0);
	n = snprintf(num, sizeof(num), "\t%ld\t%d\t%c\t%zu\t%u", ji->attempt,
				 ji->status, ji->stream ? 't' : 'f', ji->body_bytes,
				 ji->client_port);
	sb_putn(&sb, num, (size_t) n);
	journal_col(&sb, ji->auth ? ji->auth : "", ji->auth ? strlen(ji->auth) : 0);
	{
		SBuf		xh;

		sb_init(&xh, 64);
		MHD_get_connection_values(ji->conn, MHD_HEADER_KIND, journal_x_header, &xh);
		journal_col(&sb, xh.data, xh.len);
		free(xh.data);
	}
	sb_putn(&sb, "\n", 1);

	pthread_mutex_lock(&journal_lock);
	seq = atomic_fetch_add(&request_seq, 1) + 1;
	if (journal_count == SIM_JOURNAL_MAX)
	{
		/* full: drop the oldest entry to make room */
		free(journal_ring[journal_head].rest);
		journal_head = (journal_head + 1) % SIM_JOURNAL_MAX;
		journal_count--;
	}
	{
		JournalEntry *je = &journal_ring[(journal_head + journal_count) % SIM_JOURNAL_MAX];

		je->seq = seq;
		je->len = sb.len;
		je->rest = sb.data;
	}
	journal_count++;
	pthread_mutex_unlock(&journal_lock);
	return seq;
}

/* Render the whole journal as TSV into a fresh buffer. */
static void
journal_dump(SBuf *out)
{
	size_t		i;
	size_t		total = 0;

	pthread_mutex_lock(&journal_lock);
	for (i = 0; i < journal_count; i++)
		total += 21 + journal_ring[(journal_head + i) % SIM_JOURNAL_MAX].len;
	sb_init(out, total + 1);
	for (i = 0; i < journal_count; i++)
	{
		JournalEntry *je = &journal_ring[(journal_head + i) % SIM_JOURNAL_MAX];

		sb_printf(out, "%" PRIu64, je->seq);
		sb_putn(out, je->rest, je->len);
	}
	pthread_mutex_unlock(&journal_lock);
}

/* Empty the journal (POST /journal/reset). */
static void
journal_reset(void)
{
	size_t		i;

	pthread_mutex_lock(&journal_lock);
	for (i = 0; i < journal_count; i++)
		free(journal_ring[(journal_head + i) % SIM_JOURNAL_MAX].rest);
	journal_head = 0;
	journal_count = 0;
	pthread_mutex_unlock(&journal_lock);
}

/* ----------------------------------------------------------------
 *		behaviours and options
 * ----------------------------------------------------------------
 */
typedef enum BehaviourKind
{
	B_OK,
	B_MISSING,
	B_STATUS,					/* arg = status code */
	B_RATELIMIT,				/* arg = Retry-After seconds */
	B_RATELIMITMS,				/* arg = retry-after-ms */
	B_RATELIMITDATE,			/* arg = seconds from now */
	B_QUOTA,
	B_CONTEXT,
	B_CONTENTPOLICY,
	B_FLAKY,					/* arg = failing attempts, arg2 = status */
	B_TWOSTEP,					/* arg = first status, arg2 = second */
	B_HANG,
	B_CUT,
	B_MALFORMED,
	B_EMPTY,
	B_WRONGTYPE,
	B_NULLCONTENT,
	B_NORETRY,
	B_FORCERETRY,
	B_STREAMCUT,
	B_STREAMERROR,
	B_STREAMSTALL,				/* arg = stall ms */
	B_BIGREPLY,					/* arg = content bytes */
	B_LITELLM_QUOTA,			/* LiteLLM's rewrite of a quota 429 */
	B_LITELLM_CONTENT,			/* ... of a content-policy 400 */
	B_LITELLM_CONTEXT,			/* ... of a context-length 400 */
	B_LITELLM_NODEPLOY,			/* its router's 429; arg = seconds */
	B_PORTKEY_FAILURE,			/* Portkey's own 400 */
	B_HOSTILE					/* arg = Hostile */
} BehaviourKind;

/* Hostile gateway answers: key echoes and invalid UTF-8. */
typedef enum Hostile
{
	H_ECHOKEY_REQUESTID,
	H_ECHOKEY_MODEL,
	H_ECHOKEY_FINISH,
	H_ECHOKEY_UPPER,
	H_ECHOKEY_CTRL,
	H_BADUTF8_ERROR,
	H_BADUTF8_JSON,
	H_BADUTF8_CONTENT
} Hostile;

static const char *const hostile_names[] = {
	[H_ECHOKEY_REQUESTID] = "echokey-requestid",
	[H_ECHOKEY_MODEL] = "echokey-model",
	[H_ECHOKEY_FINISH] = "echokey-finish",
	[H_ECHOKEY_UPPER] = "echokey-upper",
	[H_ECHOKEY_CTRL] = "echokey-ctrl",
	[H_BADUTF8_ERROR] = "badutf8-error",
	[H_BADUTF8_JSON] = "badutf8-json",
	[H_BADUTF8_CONTENT] = "badutf8-content",
};

typedef struct Behaviour
{
	BehaviourKind kind;
	long		arg;
	long		arg2;
} Behaviour;

/* Token counts the usage object reports (hostile values for the client). */
typedef enum UsageKind
{
	USAGE_COUNTED,				/* the word counts */
	USAGE_NEGATIVE,				/* -4294967295 and -3 */
	USAGE_MAX,					/* INT_MAX twice: the sum overflows int32 */
	USAGE_OVERFLOW				/* beyond int64 and beyond int32 */
} UsageKind;

typedef struct Options
{
	long		latency_ms;
	long		tokens;			/* -1: none */
	long		chunkdelay_ms;
	bool		utf8;
	bool		crlf;
	bool		bom;			/* streaming: a UTF-8 BOM first */
	bool		oneevent;		/* streaming: all content in one event */
	bool		doneopen;		/* streaming: stay open after [DONE] */
	bool		multiline;		/* streaming: each chunk on two data lines */
	bool		trickle;		/* streaming: events in small timed pieces */
	bool		hugenumber;		/* a number no numeric type can hold */
	bool		litellm;		/* request ids as LiteLLM sends them */
	bool		portkey;		/* plus Portkey's trace id */
	bool		norequestid;	/* no x-request-id */
	UsageKind	usage;
} Options;

/*
 * Parse "<num>-<status>": num up to maxv, status 100..599.  False if
 * malformed.
 */
static bool
parse_num_status(const char *s, size_t n, long maxv, long *num, long *status)
{
	const char *dash = memchr(s, '-', n);

	return dash != NULL &&
		parse_num(s, (size_t) (dash - s), maxv, num) &&
		parse_num(dash + 1, n - (size_t) (dash - s) - 1, 599, status) &&
		*status >= 100;
}

/*
 * Parse one behaviour token.  Returns true only for listed behaviours (with
 * valid arguments); the caller treats anything else in a model name as ok.
 */
static bool
parse_behaviour(const char *s, size_t n, Behaviour *b)
{
	static const struct
	{
		const char *name;
		BehaviourKind kind;
	}			plain[] = {
		{"ok", B_OK}, {"missing", B_MISSING}, {"quota", B_QUOTA},
		{"context", B_CONTEXT}, {"contentpolicy", B_CONTENTPOLICY},
		{"hang", B_HANG}, {"cut", B_CUT}, {"malformed", B_MALFORMED},
		{"empty", B_EMPTY}, {"wrongtype", B_WRONGTYPE},
		{"nullcontent", B_NULLCONTENT}, {"noretry", B_NORETRY},
		{"forceretry", B_FORCERETRY}, {"streamcut", B_STREAMCUT},
		{"streamerror", B_STREAMERROR},
		{"litellm-quota", B_LITELLM_QUOTA}, {"litellm-content", B_LITELLM_CONTENT},
		{"litellm-context", B_LITELLM_CONTEXT}, {"portkey-failure", B_PORTKEY_FAILURE},
	};
	size_t		i;

	b->arg = 0;
	b->arg2 = 0;
	for (i = 0; i < sizeof(plain) / sizeof(plain[0]); i++)
	{
		if (equals(s, n, plain[i].name))
		{
			b->kind = plain[i].kind;
			return true;
		}
	}
	for (i = 0; i < sizeof(hostile_names) / sizeof(hostile_names[0]); i++)
	{
		if (equals(s, n, hostile_names[i]))
		{
			b->kind = B_HOSTILE;
			b->arg = (long) i;
			return true;
		}
	}

#define ARG_BEHAVIOUR(pfx, k, maxv) \
	if (has_prefix(s, n, pfx)) \
	{ \
		b->kind = (k); \
		return parse_num(s + strlen(pfx), n - strlen(pfx), (maxv), &b->arg); \
	}
	if (has_prefix(s, n, "status-"))
	{
		b->kind = B_STATUS;
		return parse_num(s + 7, n - 7, 599, &b->arg) && b->arg >= 100;
	}
	ARG_BEHAVIOUR("ratelimit-", B_RATELIMIT, 999999999L);
	ARG_BEHAVIOUR("ratelimitms-", B_RATELIMITMS, 999999999L);
	ARG_BEHAVIOUR("ratelimitdate-", B_RATELIMITDATE, 999999999L);
	ARG_BEHAVIOUR("streamstall-", B_STREAMSTALL, SIM_MAX_MS);
	ARG_BEHAVIOUR("bigreply-", B_BIGREPLY, SIM_MAX_BIGREPLY);
	ARG_BEHAVIOUR("litellm-nodeploy-", B_LITELLM_NODEPLOY, 999999999L);
#undef ARG_BEHAVIOUR
	if (has_prefix(s, n, "twostep-"))
	{
		b->kind = B_TWOSTEP;
		return parse_num_status(s + 8, n - 8, 599, &b->arg, &b->arg2) &&
			b->arg >= 100;
	}
	if (has_prefix(s, n, "flaky-"))
	{
		b->kind = B_FLAKY;
		b->arg2 = 500;
		if (memchr(s + 6, '-', n - 6) == NULL)
			return parse_num(s + 6, n - 6, 999999999L, &b->arg);
		return parse_num_status(s + 6, n - 6, 999999999L, &b->arg, &b->arg2);
	}
	return false;
}

/* Parse one option token; unknown options are ignored. */
static void
parse_option(const char *s, size_t n, Options *o)
{
	long		v;

	if (has_prefix(s, n, "latency-") && parse_num(s + 8, n - 8, SIM_MAX_MS, &v))
		o->latency_ms = v;
	else if (has_prefix(s, n, "tokens-") && parse_num(s + 7, n - 7, SIM_MAX_TOKENS, &v))
		o->tokens = v;
	else if (has_prefix(s, n, "chunkdelay-") && parse_num(s + 11, n - 11, SIM_MAX_MS, &v))
		o->chunkdelay_ms = v;
	else if (equals(s, n, "utf8"))
		o->utf8 = true;
	else if (equals(s, n, "crlf"))
		o->crlf = true;
	else if (equals(s, n, "bom"))
		o->bom = true;
	else if (equals(s, n, "oneevent"))
		o->oneevent = true;
	else if (equals(s, n, "doneopen"))
		o->doneopen = true;
	else if (equals(s, n, "multiline"))
		o->multiline = true;
	else if (equals(s, n, "trickle"))
		o->trickle = true;
	else if (equals(s, n, "hugenumber"))
		o->hugenumber = true;
	else if (equals(s, n, "litellm"))
		o->litellm = true;
	else if (equals(s, n, "portkey"))
		o->portkey = true;
	else if (equals(s, n, "norequestid"))
		o->norequestid = true;
	else if (equals(s, n, "usage-negative"))
		o->usage = USAGE_NEGATIVE;
	else if (equals(s, n, "usage-max"))
		o->usage = USAGE_MAX;
	else if (equals(s, n, "usage-overflow"))
		o->usage = USAGE_OVERFLOW;
}

/* Apply the '+'-separated options in s[0..n) over those already in o. */
static void
parse_options(const char *s, size_t n, Options *o)
{
	const char *end = s + n;

	while (s < end)
	{
		const char *plus = memchr(s, '+', (size_t) (end - s));
		size_t		len = plus ? (size_t) (plus - s) : (size_t) (end - s);

		parse_option(s, len, o);
		s += len + 1;
	}
}

/* Split a model name into its behaviour and options. */
static void
parse_model(const char *m, size_t n, Behaviour *b, Options *o)
{
	const char *plus = memchr(m, '+', n);
	size_t		first = plus ? (size_t) (plus - m) : n;

	memset(o, 0, sizeof(*o));	/* every option off */
	o->tokens = -1;
	if (!parse_behaviour(m, first, b))
	{
		b->kind = B_OK;
		b->arg = b->arg2 = 0;
	}
	if (plus)
		parse_options(plus + 1, n - first - 1, o);
}

/* ----------------------------------------------------------------
 *		outages set while running (POST /control/down, /control/up)
 * ----------------------------------------------------------------
 */
#define SIM_MAX_DOWNS		64	/* models and prefixes down at once */
#define SIM_DOWN_NAME		256 /* longest model or prefix taken down */

typedef struct Down
{
	bool		is_prefix;		/* name is an endpoint prefix, else a model */
	char		name[SIM_DOWN_NAME];
	Behaviour	behaviour;		/* what its requests get instead */
} Down;

static pthread_mutex_t down_lock = PTHREAD_MUTEX_INITIALIZER;
static Down downs[SIM_MAX_DOWNS];
static atomic_int down_count = 0;	/* read without the lock: 0 is the fast path */

/* The behaviour forced on a model or prefix that is down; false if up. */
static bool
down_lookup(bool is_prefix, const char *name, size_t len, Behaviour *b)
{
	bool		found = false;
	int			i;

	if (atomic_load(&down_count) == 0)
		return false;
	pthread_mutex_lock(&down_lock);
	for (i = 0; i < atomic_load(&down_count) && !found; i++)
		if (downs[i].is_prefix == is_prefix && equals(name, len, downs[i].name))
		{
			*b = downs[i].behaviour;
			found = true;
		}
	pthread_mutex_unlock(&down_lock);
	return found;
}

/*
 * Take a model or prefix down with behaviour b (down), or bring it back up;
 * name NULL brings everything up.  False when the table is full or the
 * name too long.
 */
static bool
down_set(bool down, bool is_prefix, const char *name, const Behaviour *b)
{
	int			n;
	int			i;
	bool		ok = true;

	if (name && strlen(name) >= SIM_DOWN_NAME)
		return false;
	pthread_mutex_lock(&down_lock);
	n = atomic_load(&down_count);
	for (i = 0; i < n; i++)
		if (name == NULL ||
			(downs[i].is_prefix == is_prefix && strcmp(downs[i].name, name) == 0))
		{
			downs[i--] = downs[--n];	/* a name is in the table at most once */
		}
	if (down)
	{
		if (n == SIM_MAX_DOWNS)
			ok = false;
		else
		{
			downs[n].is_prefix = is_prefix;
			strcpy(downs[n].name, name);
			downs[n].behaviour = *b;
			n++;
		}
	}
	atomic_store(&down_count, n);
	pthread_mutex_unlock(&down_lock);
	return ok;
}

/* ----------------------------------------------------------------
 *		response helpers
 * ----------------------------------------------------------------
 */

/* Turn a buffer into an MHD response, handing the memory over to MHD. */
static struct MHD_Response *
response_from_sbuf(SBuf *sb)
{
	struct MHD_Response *r;

	if (sb->len == 0)
	{
		free(sb->data);
		return MHD_create_response_from_buffer(0, (void *) "", MHD_RESPMEM_PERSISTENT);
	}
	r = MHD_create_response_from_buffer(sb->len, sb->data, MHD_RESPMEM_MUST_FREE);
	if (r == NULL)
		free(sb->data);
	sb->data = NULL;
	return r;
}

/* Queue a response and drop our reference to it. */
static enum MHD_Result
queue_and_release(struct MHD_Connection *conn, unsigned status, struct MHD_Response *r)
{
	enum MHD_Result ret;

	if (r == NULL)
		return MHD_NO;
	ret = MHD_queue_response(conn, status, r);
	MHD_destroy_response(r);
	return ret;
}

/* Add the x-request-id header carrying seq, unless a hostile answer set one. */
static void
add_request_id(struct MHD_Response *r, uint64_t seq)
{
	char		v[40];

	if (MHD_get_response_header(r, "x-request-id") != NULL)
		return;
	snprintf(v, sizeof(v), "req-%" PRIu64, seq);
	MHD_add_response_header(r, "x-request-id", v);
}

/*
 * Add the request ids of a chat answer: x-request-id, or with the litellm
 * option LiteLLM's x-litellm-call-id and the upstream's id as
 * llm_provider-x-request-id; the portkey option adds x-portkey-trace-id;
 * norequestid leaves x-request-id out.
 */
static void
add_gateway_ids(struct MHD_Response *r, uint64_t seq, const Options *o)
{
	char		v[48];

	if (o->litellm)
	{
		snprintf(v, sizeof(v), "litellm-%" PRIu64, seq);
		MHD_add_response_header(r, "x-litellm-call-id", v);
		snprintf(v, sizeof(v), "req-%" PRIu64, seq);
		MHD_add_response_header(r, "llm_provider-x-request-id", v);
	}
	else if (!o->norequestid)
		add_request_id(r, seq);
	if (o->portkey)
	{
		snprintf(v, sizeof(v), "trace-%" PRIu64, seq);
		MHD_add_response_header(r, "x-portkey-trace-id", v);
	}
}

/* Write an OpenAI-style error object; NULL param/code become JSON null. */
static void
error_json(SBuf *sb, const char *message, const char *type, const char *param,
		   const char *code)
{
	sb_puts(sb, "{\"error\":{\"message\":");
	sb_json_cstr(sb, message);
	sb_puts(sb, ",\"type\":");
	sb_json_cstr(sb, type);
	sb_puts(sb, ",\"param\":");
	sb_json_cstr(sb, param);
	sb_puts(sb, ",\"code\":");
	sb_json_cstr(sb, code);
	sb_puts(sb, "}}");
}

/* Reason phrase used in the Cloudflare-like HTML pages. */
static const char *
html_reason(int status)
{
	switch (status)
	{
		case 502:
			return "Bad Gateway";
		case 503:
			return "Service Unavailable";
		case 504:
			return "Gateway Timeout";
		case 524:
			return "A Timeout Occurred";
	}
	return NULL;
}

/*
 * Body of a plain status-<code> answer: Cloudflare-like HTML for 502/503/504/
 * 524, else an OpenAI error JSON whose type/code depend on the status.
 * Sets *ctype to the matching Content-Type.
 */
static void
status_body(SBuf *sb, int status, const char *model, const char *auth,
			const char **ctype)
{
	char		msg[256];
	const char *reason = html_reason(status);

	if (reason)
	{
		*ctype = "text/html";
		sb_printf(sb,
				  "<html>\n<head><title>%d %s</title></head>\n<body>\n"
				  "<center><h1>%d %s</h1></center>\n"
				  "<hr><center>cloudflare</center>\n</body>\n</html>\n",
				  status, reason, status, reason);
		return;
	}
	*ctype = "application/json";
	switch (status)
	{
		case 400:
			error_json(sb, "Simulated bad request.", "invalid_request_error", NULL, NULL);
			break;
		case 401:
			{
				/* echo the key on purpose: the client under test must redact it */
				SBuf		m;
				const char *key = auth ? auth : "";

				if (strncasecmp(key, "Bearer ", 7) == 0)
					key += 7;
				sb_init(&m, 64 + strlen(key));
				sb_puts(&m, "Incorrect API key provided: ");
				sb_puts(&m, key);
				error_json(sb, m.data, "invalid_request_error", NULL, "invalid_api_key");
				free(m.data);
			}
			break;
		case 403:
			error_json(sb, "You are not allowed to perform this request.",
					   "permission_denied", NULL, NULL);
			break;
		case 404:
			{
				SBuf		m;

				sb_init(&m, 64 + strlen(model));
				sb_printf(&m, "The model `%s` does not exist", model);
				error_json(sb, m.data, "invalid_request_error", NULL, "model_not_found");
				free(m.data);
			}
			break;
		case 408:
			error_json(sb, "Request timed out.", "timeout", NULL, NULL);
			break;
		case 409:
			error_json(sb, "The request conflicts with the current state of the server.",
					   "conflict", NULL, NULL);
			break;
		case 413:
			error_json(sb, "Request too large.", "invalid_request_error", NULL,
					   "request_too_large");
			break;
		case 422:
			error_json(sb, "Unprocessable request.", "invalid_request_error", NULL, NULL);
			break;
		case 429:
			error_json(sb, "Rate limit reached for requests. Please try again later.",
					   "requests", NULL, "rate_limit_exceeded");
			break;
		case 500:
			error_json(sb, "The server had an error while processing your request. Sorry about that!",
					   "server_error", NULL, NULL);
			break;
		default:
			snprintf(msg, sizeof(msg), "Simulated HTTP status %d.", status);
			error_json(sb, msg, "server_error", NULL, NULL);
			break;
	}
}

/*
 * Build the answer of an error behaviour (one that never yields a chat
 * completion), adding its special headers.  Returns the HTTP status.
 */
static int
build_error_answer(const Behaviour *b, const char *model, const char *auth,
				   struct MHD_Response **out)
{
	SBuf		sb;
	const char *ctype = "application/json";
	int			status = 500;
	char		hdr[64];
	const char *hname = NULL;
	struct MHD_Response *r;

	sb_init(&sb, 256);
	switch (b->kind)
	{
		case B_STATUS:
			status = (int) b->arg;
			status_body(&sb, status, model, auth, &ctype);
			break;
		case B_MISSING:
			status = 404;
			{
				SBuf		m;

				sb_init(&m, 64 + strlen(model));
				sb_printf(&m, "The model `%s` does not exist", model);
				error_json(&sb, m.data, "invalid_request_error", "model", "model_not_found");
				free(m.data);
			}
			break;
		case B_RATELIMIT:
		case B_RATELIMITMS:
		case B_RATELIMITDATE:
			status = 429;
			status_body(&sb, 429, model, auth, &ctype);
			if (b->kind == B_RATELIMIT)
			{
				hname = "Retry-After";
				snprintf(hdr, sizeof(hdr), "%ld", b->arg);
			}
			else if (b->kind == B_RATELIMITMS)
			{
				hname = "retry-after-ms";
				snprintf(hdr, sizeof(hdr), "%ld", b->arg);
			}
			else
			{
				time_t		t = time(NULL) + b->arg;
				struct tm	tm;

				gmtime_r(&t, &tm);
				hname = "Retry-After";
				strftime(hdr, sizeof(hdr), "%a, %d %b %Y %H:%M:%S GMT", &tm);
			}
			break;
		case B_QUOTA:
			status = 429;
			error_json(&sb, "You exceeded your current quota, please check your plan and billing details.",
					   "insufficient_quota", NULL, "insufficient_quota");
			break;
		case B_CONTEXT:
			status = 400;
			error_json(&sb, "This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens.",
					   "invalid_request_error", "messages", "context_length_exceeded");
			break;
		case B_CONTENTPOLICY:
			status = 400;
			error_json(&sb, "Your request was rejected as a result of our safety system.",
					   "invalid_request_error", NULL, "content_policy_violation");
			break;
		case B_LITELLM_QUOTA:
			status = 429;
			error_json(&sb, "litellm.RateLimitError: RateLimitError: OpenAIException - Error code: 429 - "
					   "{'error': {'message': 'You exceeded your current quota, please check your plan and "
					   "billing details.', 'type': 'insufficient_quota', 'param': None, "
					   "'code': 'insufficient_quota'}}", NULL, NULL, "429");
			break;
		case B_LITELLM_CONTENT:
			status = 400;
			error_json(&sb, "litellm.ContentPolicyViolationError: litellm.ContentPolicyViolationError: "
					   "OpenAIException - Your request was rejected as a result of our safety system.",
					   NULL, NULL, "400");
			break;
		case B_LITELLM_CONTEXT:
			status = 400;
			error_json(&sb, "litellm.ContextWindowExceededError: litellm.BadRequestError: "
					   "OpenAIException - Error code: 400 - This request exceeds the model's window.",
					   NULL, NULL, "400");
			break;
		case B_LITELLM_NODEPLOY:
			status = 429;
			{
				SBuf		m;

				sb_init(&m, 160 + strlen(model));
				sb_printf(&m, "No deployments available for selected model, Try again in %ld seconds. "
						  "Passed model=%s. pre-call-checks=False, allowed_model_region=n/a, "
						  "cooldown_list=[]", b->arg, model);
				error_json(&sb, m.data, NULL, NULL, "429");
				free(m.data);
			}
			break;
		case B_PORTKEY_FAILURE:
			status = 400;
			sb_puts(&sb, "{\"status\":\"failure\",\"message\":"
					"\"Either x-portkey-config or x-portkey-provider header is required\"}");
			break;
		case B_NORETRY:
			status = 500;
			status_body(&sb, 500, model, auth, &ctype);
			hname = "x-should-retry";
			strcpy(hdr, "false");
			break;
		case B_FORCERETRY:
			status = 400;
			status_body(&sb, 400, model, auth, &ctype);
			hname = "x-should-retry";
			strcpy(hdr, "true");
			break;
		default:
			/* not an error behaviour: callers never get here */
			status_body(&sb, 500, model, auth, &ctype);
			break;
	}
	r = response_from_sbuf(&sb);
	if (r)
	{
		MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
		if (hname)
			MHD_add_response_header(r, hname, hdr);
	}
	*out = r;
	return status;
}

/* ----------------------------------------------------------------
 *		hostile answers
 * ----------------------------------------------------------------
 */

/* The status a hostile answer has. */
static int
hostile_status(Hostile h)
{
	switch (h)
	{
		case H_ECHOKEY_UPPER:
		case H_ECHOKEY_CTRL:
			return 401;
		case H_BADUTF8_ERROR:
			return 400;
		default:
			return 200;
	}
}

/*
 * Build a hostile answer: one that echoes the bearer key (auth, the
 * Authorization header) where a client might store it without thinking, or
 * that sends bytes that are not UTF-8.  Returns its status.
 */
static int
build_hostile_answer(Hostile h, const char *model, const char *auth,
					 struct MHD_Response **out)
{
	const char *key = auth ? auth : "";
	SBuf		sb;
	SBuf		m;
	size_t		i;
	struct MHD_Response *r;

	if (strncasecmp(key, "Bearer ", 7) == 0)
		key += 7;
	sb_init(&sb, 256 + strlen(key) + strlen(model));
	sb_init(&m, 64 + strlen(key));
	switch (h)
	{
		case H_ECHOKEY_REQUESTID:
		case H_ECHOKEY_MODEL:
		case H_ECHOKEY_FINISH:
		case H_BADUTF8_CONTENT:
			sb_puts(&sb, "{\"id\":\"chatcmpl-sim-hostile\",\"object\":\"chat.completion\","
					"\"created\":0,\"model\":");
			sb_json_cstr(&sb, h == H_ECHOKEY_MODEL ? key : model);
			sb_puts(&sb, ",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
					"\"content\":");
			/* a Latin-1 e-acute: not UTF-8 */
			sb_puts(&sb, h == H_BADUTF8_CONTENT ? "\"caf\xe9\"" : "\"hostile\"");
			sb_puts(&sb, "},\"finish_reason\":");
			sb_json_cstr(&sb, h == H_ECHOKEY_FINISH ? key : "stop");
			sb_puts(&sb, "}],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1,"
					"\"total_tokens\":2}}");
			break;
		case H_ECHOKEY_UPPER:
		case H_ECHOKEY_CTRL:
			sb_puts(&m, "Incorrect API key provided: ");
			for (i = 0; key[i]; i++)
			{
				if (h == H_ECHOKEY_CTRL && i == strlen(key) / 2)
					sb_putn(&m, "\x01", 1);
				if (h == H_ECHOKEY_UPPER && key[i] >= 'a' && key[i] <= 'z')
					sb_putn(&m, (char[]) {key[i] - 'a' + 'A'}, 1);
				else
					sb_putn(&m, key + i, 1);
			}
			error_json(&sb, m.data, "invalid_request_error", NULL, "invalid_api_key");
			break;
		case H_BADUTF8_ERROR:
			error_json(&sb, "Bad byte \xff\xfe here.", "invalid_request_error", NULL, NULL);
			break;
		case H_BADUTF8_JSON:
			sb_puts(&sb, "{\"object\":\"chat.completion\",\xff\xfe}");
			break;
	}
	free(m.data);
	r = response_from_sbuf(&sb);
	if (r)
	{
		MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
		if (h == H_ECHOKEY_REQUESTID)
			MHD_add_response_header(r, "x-request-id", key);
	}
	*out = r;
	return hostile_status(h);
}

/* ----------------------------------------------------------------
 *		chat completion content
 * ----------------------------------------------------------------
 */
static const char utf8_sample[] = "h\xc3\xa9llo w\xc3\xb6rld \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e \xf0\x9f\x98\x80";
static const char filler[] = "lorem ipsum dolor sit amet ";

/* True for a byte that starts a UTF-8 character (not a continuation). */
static inline bool
is_char_start(unsigned char c)
{
	return (c & 0xC0) != 0x80;
}

/* Build CONTENT for ok-like answers from the prompt and the options. */
static void
build_content(SBuf *c, const char *prompt, size_t plen, const Options *o,
			  long bigreply)
{
	sb_init(c, 16 + plen);
	sb_puts(c, "echo: ");
	sb_putn(c, prompt, plen);
	if (o->utf8)
	{
		int			i;

		for (i = 0; i < 3; i++)
		{
			sb_puts(c, " ");
			sb_puts(c, utf8_sample);
		}
	}
	if (o->tokens > 0)
	{
		long		i;

		for (i = 1; i <= o->tokens; i++)
			sb_printf(c, " w%ld", i);
	}
	if (bigreply >= 0)
	{
		size_t		want = (size_t) bigreply;

		if (c->len > want)
		{
			/* cut on a character boundary, the filler pads what is left */
			size_t		cut = want;

			while (cut > 0 && !is_char_start((unsigned char) c->data[cut]))
				cut--;
			c->len = cut;
			c->data[cut] = '\0';
		}
		/* one space keeps the last prompt word apart from the filler */
		if (c->len > 0 && c->len < want && !is_space((unsigned char) c->data[c->len - 1]))
			sb_putn(c, " ", 1);
		sb_reserve(c, want - c->len);
		while (c->len < want)
		{
			size_t		k = sizeof(filler) - 1;

			if (k > want - c->len)
				k = want - c->len;
			memcpy(c->data + c->len, filler, k);
			c->len += k;
		}
		c->data[c->len] = '\0';
	}
}

/* How choices[0].message.content is rendered in a plain answer. */
typedef enum ContentShape
{
	SHAPE_TEXT,
	SHAPE_EMPTY_CHOICES,
	SHAPE_NUMBER,
	SHAPE_NULL
} ContentShape;

/* The text a number no numeric type can hold: 1e-99999999999999999999. */
#define HUGE_NUMBER		"1e-99999999999999999999"

/* Write the usage object, with the token counts the options ask for. */
static void
sb_usage(SBuf *sb, long ptok, long ctok, const Options *o)
{
	switch (o->usage)
	{
		case USAGE_COUNTED:
			sb_printf(sb, "{\"prompt_tokens\":%ld,\"completion_tokens\":%ld,"
					  "\"total_tokens\":%ld}", ptok, ctok, ptok + ctok);
			break;
		case USAGE_NEGATIVE:
			sb_puts(sb, "{\"prompt_tokens\":-4294967295,\"completion_tokens\":-3,"
					"\"total_tokens\":-4294967298}");
			break;
		case USAGE_MAX:
			sb_puts(sb, "{\"prompt_tokens\":2147483647,\"completion_tokens\":2147483647,"
					"\"total_tokens\":4294967294}");
			break;
		case USAGE_OVERFLOW:
			sb_puts(sb, "{\"prompt_tokens\":99999999999999999999,"
					"\"completion_tokens\":2147483648,"
					"\"total_tokens\":100000000002147483647}");
			break;
	}
}

/* Write the plain (non-streamed) chat.completion JSON. */
static void
completion_json(SBuf *sb, uint64_t seq, const char *model, const SBuf *content,
				ContentShape shape, long ptok, const Options *o)
{
	long		ctok = shape == SHAPE_TEXT ? count_words(content->data, content->len) : 0;

	sb_init(sb, 256 + content->len + strlen(model));
	sb_printf(sb, "{\"id\":\"chatcmpl-sim-%" PRIu64 "\",\"object\":\"chat.completion\","
			  "\"created\":%lld,\"model\":", seq, (long long) time(NULL));
	sb_json_cstr(sb, model);
	if (shape == SHAPE_EMPTY_CHOICES)
		sb_puts(sb, ",\"choices\":[]");
	else
	{
		sb_puts(sb, ",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":");
		if (shape == SHAPE_TEXT)
			sb_json_str(sb, content->data, content->len);
		else if (shape == SHAPE_NUMBER)
			sb_puts(sb, "42");
		else
			sb_puts(sb, "null");
		sb_puts(sb, "},\"finish_reason\":\"stop\"}]");
	}
	if (o->hugenumber)
		sb_puts(sb, ",\"sim_score\":" HUGE_NUMBER);
	sb_puts(sb, ",\"usage\":");
	sb_usage(sb, ptok, ctok, o);
	sb_puts(sb, "}");
}

/* ----------------------------------------------------------------
 *		cut answers (Content-Length of the whole, half the bytes)
 * ----------------------------------------------------------------
 */
typedef struct CutState
{
	SBuf		body;
	size_t		half;
} CutState;

/* Content reader sending the first half of the body, then failing. */
static ssize_t
cut_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
	CutState   *cs = cls;
	size_t		n;

	if (pos >= cs->half)
		return MHD_CONTENT_READER_END_WITH_ERROR;
	n = cs->half - (size_t) pos;
	if (n > max)
		n = max;
	memcpy(buf, cs->body.data + pos, n);
	return (ssize_t) n;
}

/* Free a CutState. */
static void
cut_free(void *cls)
{
	CutState   *cs = cls;

	free(cs->body.data);
	free(cs);
}

/* ----------------------------------------------------------------
 *		streamed (SSE) answers
 * ----------------------------------------------------------------
 */
static void wait_until_closed(int fd);

typedef struct StreamState
{
	SBuf		bytes;			/* all events, back to back */
	size_t		nev;
	size_t		evcap;
	size_t	   *ev_end;			/* end offset of event i */
	size_t	   *ev_split;		/* if > start: first write ends here */
	long	   *ev_delay;		/* sleep before event i */
	size_t		cur;			/* event being sent */
	size_t		off;			/* bytes handed to MHD so far */
	bool		split_pause;	/* sleep between the halves of a split event */
	bool		fail_at_end;	/* END_WITH_ERROR instead of a clean end */
	int			hold_fd;		/* >= 0: stay open on this socket at the end */
	bool		trickle;		/* SIM_TRICKLE_BYTES per write, 1 ms apart */
} StreamState;

/* Close the event that was appended to st->bytes since the previous one. */
static void
stream_end_event(StreamState *st, long delay, size_t split)
{
	if (st->nev == st->evcap)
	{
		st->evcap = st->evcap ? st->evcap * 2 : 16;
		st->ev_end = xrealloc(st->ev_end, st->evcap * sizeof(size_t));
		st->ev_split = xrealloc(st->ev_split, st->evcap * sizeof(size_t));
		st->ev_delay = xrealloc(st->ev_delay, st->evcap * sizeof(long));
	}
	st->ev_end[st->nev] = st->bytes.len;
	st->ev_split[st->nev] = split;
	st->ev_delay[st->nev] = delay;
	st->nev++;
}

/* Content reader handing out one event (or half of one) per call. */
static ssize_t
stream_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
	StreamState *st = cls;
	size_t		start;
	size_t		limit;
	size_t		n;

	(void) pos;
	if (atomic_load(&stopping))
		return MHD_CONTENT_READER_END_WITH_ERROR;
	if (st->cur >= st->nev && st->hold_fd >= 0)
	{
		/* everything was sent; keep the connection open, ending nothing */
		wait_until_closed(st->hold_fd);
		return MHD_CONTENT_READER_END_WITH_ERROR;
	}
	if (st->cur >= st->nev)
		return st->fail_at_end ? MHD_CONTENT_READER_END_WITH_ERROR :
			MHD_CONTENT_READER_END_OF_STREAM;

	start = st->cur == 0 ? 0 : st->ev_end[st->cur - 1];
	if (st->off == start && st->ev_delay[st->cur] > 0)
	{
		if (!sim_sleep_ms(st->ev_delay[st->cur]))
			return MHD_CONTENT_READER_END_WITH_ERROR;
	}
	limit = st->ev_end[st->cur];
	if (st->ev_split[st->cur] > start)
	{
		if (st->off < st->ev_split[st->cur])
			limit = st->ev_split[st->cur];
		else if (st->off == st->ev_split[st->cur] && st->split_pause)
			sim_sleep_ms(2);	/* so the halves leave in separate segments */
	}
	n = limit - st->off;
	if (n > max)
		n = max;
	if (st->trickle)
	{
		/* every piece of an event after its first comes 1 ms later */
		if (n > SIM_TRICKLE_BYTES)
			n = SIM_TRICKLE_BYTES;
		if (st->off > start && !sim_sleep_ms(1))
			return MHD_CONTENT_READER_END_WITH_ERROR;
	}
	memcpy(buf, st->bytes.data + st->off, n);
	st->off += n;
	if (st->off == st->ev_end[st->cur])
		st->cur++;
	return (ssize_t) n;
}

/* Free a StreamState. */
static void
stream_free(void *cls)
{
	StreamState *st = cls;

	free(st->bytes.data);
	free(st->ev_end);
	free(st->ev_split);
	free(st->ev_delay);
	free(st);
}

/*
 * Start a "data: {chunk header" event up to and including "choices":.  With
 * multiline the rest of the chunk goes on a second data line, which a
 * client joins to the first with a newline (white space to JSON).
 */
static void
chunk_head(SBuf *sb, uint64_t seq, long long created, const char *model,
		   const Options *o)
{
	sb_printf(sb, "data: {\"id\":\"chatcmpl-sim-%" PRIu64 "\",\"object\":\"chat.completion.chunk\","
			  "\"created\":%lld,\"model\":", seq, created);
	sb_json_cstr(sb, model);
	sb_puts(sb, ",\"choices\":");
	if (o->multiline)
		sb_printf(sb, "%sdata: ", o->crlf ? "\r\n" : "\n");
}

/*
 * Split CONTENT into pieces, stored as end offsets in *ends.  Normally one
 * piece per word with its leading whitespace (so they concatenate back to
 * CONTENT); more than SIM_MAX_PIECES words give SIM_MAX_PIECES equal-ish byte
 * ranges on character boundaries.  With utf8 every piece is two characters,
 * unless that makes more than SIM_MAX_UTF8_PIECES pieces (then as above).
 */
static size_t
split_pieces(const SBuf *c, bool utf8, size_t **ends)
{
	size_t		cap = 16;
	size_t		n = 0;
	size_t		i;
	size_t	   *e = xmalloc(cap * sizeof(size_t));

#define PUSH_END(x) \
	do { \
		if (n == cap) { cap *= 2; e = xrealloc(e, cap * sizeof(size_t)); } \
		e[n++] = (x); \
	} while (0)

	if (utf8 && c->len <= SIM_MAX_UTF8_PIECES * 2)
	{
		int			chars = 0;

		for (i = 1; i <= c->len; i++)
		{
			if (i == c->len || is_char_start((unsigned char) c->data[i]))
			{
				if (++chars == 2 || i == c->len)
				{
					PUSH_END(i);
					chars = 0;
				}
			}
		}
	}
	if (n == 0 || n > SIM_MAX_UTF8_PIECES)
	{
		/* a piece ends where whitespace is followed by a word */
		n = 0;
		for (i = 1; i < c->len; i++)
		{
			if (is_space((unsigned char) c->data[i - 1]) &&
				!is_space((unsigned char) c->data[i]))
				PUSH_END(i);
		}
		PUSH_END(c->len);
		if (n > SIM_MAX_PIECES)
		{
			size_t		prev = 0;
			int			k;

			n = 0;
			for (k = 1; k <= SIM_MAX_PIECES; k++)
			{
				size_t		b = k == SIM_MAX_PIECES ? c->len :
					(size_t) ((unsigned long long) c->len * k / SIM_MAX_PIECES);

				while (b < c->len && !is_char_start((unsigned char) c->data[b]))
					b++;
				if (b > prev)
				{
					PUSH_END(b);
					prev = b;
				}
			}
		}
	}
#undef PUSH_END
	*ends = e;
	return n;
}

/* Kind of streamed answer. */
typedef enum StreamKind
{
	STREAM_OK,
	STREAM_CUT,					/* a few content chunks, then connection drop */
	STREAM_ERROR				/* one chunk, an error event, clean end */
} StreamKind;

/* Build every SSE event of a streamed answer. */
static StreamState *
build_stream(uint64_t seq, const char *model, const SBuf *content, const Options *o,
			 long ptok, bool include_usage, StreamKind kind, long stall_ms)
{
	StreamState *st = xmalloc(sizeof(StreamState));
	const char *eol = o->crlf ? "\r\n" : "\n";
	long long	created = (long long) time(NULL);
	size_t	   *ends;
	size_t		npieces;
	size_t		limit;
	size_t		i;
	long		ctok = count_words(content->data, content->len);

	if (o->oneevent)
	{
		ends = xmalloc(sizeof(size_t));
		ends[0] = content->len;
		npieces = 1;
	}
	else
		npieces = split_pieces(content, o->utf8, &ends);
	limit = npieces;

	memset(st, 0, sizeof(*st));
	sb_init(&st->bytes, 512 + content->len * 2 + npieces * 200);
	st->split_pause = o->utf8;
	st->fail_at_end = kind == STREAM_CUT;
	st->hold_fd = -1;
	st->trickle = o->trickle;

	if (o->bom)
	{
		/* a byte order mark straight before the first data line */
		sb_puts(&st->bytes, "\xEF\xBB\xBF");
	}
	else
	{
		/* comment line first, as some gateways send while processing */
		sb_printf(&st->bytes, ": SIM PROCESSING%s%s", eol, eol);
	}
	stream_end_event(st, 0, 0);

	if (kind == STREAM_CUT && limit > 3)
		limit = 3;
	if (kind == STREAM_ERROR && limit > 1)
		limit = 1;
	for (i = 0; i < limit; i++)
	{
		size_t		ev_start = st->bytes.len;
		size_t		p0 = i == 0 ? 0 : ends[i - 1];
		size_t		split = 0;
		long		delay = 0;

		chunk_head(&st->bytes, seq, created, model, o);
		sb_puts(&st->bytes, i == 0 ?
				"[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":" :
				"[{\"index\":0,\"delta\":{\"content\":");
		sb_json_str(&st->bytes, content->data + p0, ends[i] - p0);
		sb_printf(&st->bytes, "},\"finish_reason\":null}],\"usage\":null}%s%s", eol, eol);

		if (o->utf8)
		{
			/* first write ends just after the first multibyte lead byte */
			size_t		k;

			for (k = ev_start; k < st->bytes.len; k++)
			{
				if ((unsigned char) st->bytes.data[k] >= 0xC0)
				{
					split = k + 1;
					break;
				}
			}
		}
		if (i > 0)
			delay += o->chunkdelay_ms;
		if (i == 1)
			delay += stall_ms;
		stream_end_event(st, delay, split);
	}
	free(ends);

	if (kind == STREAM_ERROR)
	{
		sb_printf(&st->bytes, "data: {\"error\":{\"message\":\"upstream overloaded\","
				  "\"type\":\"server_error\",\"code\":\"overloaded\"}}%s%s", eol, eol);
		stream_end_event(st, o->chunkdelay_ms, 0);
		return st;
	}
	if (kind == STREAM_CUT)
		return st;

	chunk_head(&st->bytes, seq, created, model, o);
	sb_printf(&st->bytes, "[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],"
			  "\"usage\":null}%s%s", eol, eol);
	/* a stall on a one-piece content delays the final chunk instead */
	stream_end_event(st, o->chunkdelay_ms + (limit <= 1 ? stall_ms : 0), 0);
	if (include_usage)
	{
		chunk_head(&st->bytes, seq, created, model, o);
		sb_puts(&st->bytes, "[],\"usage\":");
		sb_usage(&st->bytes, ptok, ctok, o);
		sb_printf(&st->bytes, "}%s%s", eol, eol);
		stream_end_event(st, o->chunkdelay_ms, 0);
	}
	sb_printf(&st->bytes, "data: [DONE]%s%s", eol, eol);
	stream_end_event(st, o->chunkdelay_ms, 0);
	return st;
}

/* ----------------------------------------------------------------
 *		request handling
 * ----------------------------------------------------------------
 */

/* Per-request context: the accumulated upload. */
typedef struct ReqCtx
{
	char	   *body;			/* inline_buf or malloc'd */
	size_t		len;
	size_t		cap;
	size_t		total;			/* bytes received, even past the limit */
	bool		too_large;
	char		inline_buf[SIM_INLINE_BODY];
} ReqCtx;

/* Append upload data, growing the buffer geometrically. */
static void
ctx_append(ReqCtx *ctx, const char *data, size_t n)
{
	ctx->total += n;
	if (ctx->too_large)
		return;
	if (ctx->len + n > SIM_MAX_BODY)
	{
		/* keep reading (to stay in sync with the client) but drop the bytes */
		ctx->too_large = true;
		return;
	}
	if (ctx->len + n > ctx->cap)
	{
		size_t		cap = ctx->cap * 2;

		while (cap < ctx->len + n)
			cap *= 2;
		if (ctx->body == ctx->inline_buf)
		{
			ctx->body = xmalloc(cap);
			memcpy(ctx->body, ctx->inline_buf, ctx->len);
		}
		else
			ctx->body = xrealloc(ctx->body, cap);
		ctx->cap = cap;
	}
	memcpy(ctx->body + ctx->len, data, n);
	ctx->len += n;
}

/* TCP port of the client, identifying its keep-alive connection. */
static unsigned
client_port(struct MHD_Connection *conn)
{
	const union MHD_ConnectionInfo *ci =
		MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	struct sockaddr_storage ss;

	if (ci == NULL || ci->client_addr == NULL)
		return 0;
	memcpy(&ss, ci->client_addr, sizeof(sa_family_t));
	if (ss.ss_family == AF_INET)
	{
		struct sockaddr_in sin;

		memcpy(&sin, ci->client_addr, sizeof(sin));
		return ntohs(sin.sin_port);
	}
	if (ss.ss_family == AF_INET6)
	{
		struct sockaddr_in6 sin6;

		memcpy(&sin6, ci->client_addr, sizeof(sin6));
		return ntohs(sin6.sin6_port);
	}
	return 0;
}

/* The socket of a connection, or -1. */
static int
connection_fd(struct MHD_Connection *conn)
{
	const union MHD_ConnectionInfo *ci =
		MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);

	return ci ? ci->connect_fd : -1;
}

/*
 * Keep a socket (-1: none, just sleep) open until the client closes it, the
 * server stops, or SIM_HANG_MAX_MS passes.  A zero-byte MSG_PEEK is the
 * only reliable way to see the peer's FIN without consuming its data.
 */
static void
wait_until_closed(int fd)
{
	int64_t		deadline = now_ms() + SIM_HANG_MAX_MS;

	if (fd < 0)
	{
		sim_sleep_ms(SIM_HANG_MAX_MS);
		return;
	}
	while (now_ms() < deadline)
	{
		struct pollfd pfd[2] = {
			{.fd = fd,.events = POLLIN},
			{.fd = stop_pipe[0],.events = POLLIN},
		};
		int			rc = poll(pfd, 2, SIM_HANG_POLL_MS);

		if (rc < 0 && errno != EINTR)
			return;
		if (pfd[1].revents || atomic_load(&stopping))
			return;
		if (pfd[0].revents & (POLLERR | POLLHUP | POLLNVAL))
			return;
		if (pfd[0].revents & POLLIN)
		{
			char		c;
			ssize_t		n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);

			if (n == 0)
				return;			/* orderly close by the client */
			if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
				return;
			/* pipelined data is pending: poll would spin, so just wait */
			if (n > 0 && !sim_sleep_ms(SIM_HANG_POLL_MS))
				return;
		}
	}
}

/* Keep a connection open without answering (see wait_until_closed). */
static void
hang_until_closed(struct MHD_Connection *conn)
{
	wait_until_closed(connection_fd(conn));
}

/*
 * status-1xx: HTTP has no final 1xx answer and MHD would treat a queued 1xx
 * as interim and call us again, so write the interim status line ourselves
 * and then never send a final response (the client waits, as with hang).
 */
static void
interim_then_hang(struct MHD_Connection *conn, int status, uint64_t seq)
{
	const union MHD_ConnectionInfo *ci =
		MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
	char		head[128];
	int			n;

	n = snprintf(head, sizeof(head), "HTTP/1.1 %d %s\r\nx-request-id: req-%" PRIu64 "\r\n\r\n",
				 status, MHD_get_reason_phrase_for((unsigned) status), seq);
	if (ci != NULL && send(ci->connect_fd, head, (size_t) n, MSG_NOSIGNAL) != n)
		return;
	hang_until_closed(conn);
}

/* Answer a JSON error object with the given status (no journal). */
static enum MHD_Result
answer_error_json(struct MHD_Connection *conn, unsigned status, const char *message,
				  const char *type, const char *code, uint64_t seq)
{
	SBuf		sb;
	struct MHD_Response *r;

	sb_init(&sb, 256);
	error_json(&sb, message, type, NULL, code);
	r = response_from_sbuf(&sb);
	if (r == NULL)
		return MHD_NO;
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
	if (seq)
		add_request_id(r, seq);
	return queue_and_release(conn, status, r);
}

/* Answer 404 for an unknown URL, OpenAI style. */
static enum MHD_Result
answer_not_found(struct MHD_Connection *conn, const char *method, const char *url,
				 uint64_t seq)
{
	SBuf		m;
	enum MHD_Result ret;

	sb_init(&m, 64 + strlen(url));
	sb_printf(&m, "Unknown request URL: %s %s. Please check the URL for typos.", method, url);
	ret = answer_error_json(conn, MHD_HTTP_NOT_FOUND, m.data, "invalid_request_error",
							"unknown_url", seq);
	free(m.data);
	return ret;
}

/* Text of a message content: a string, or the text parts of an array. */
static void
content_text(json_t *content, const char **s, size_t *n, SBuf *scratch, long *words)
{
	*s = "";
	*n = 0;
	if (json_is_string(content))
	{
		*s = json_string_value(content);
		*n = json_string_length(content);
		if (words)
			*words += count_words(*s, *n);
	}
	else if (json_is_array(content))
	{
		size_t		i;
		json_t	   *part;

		/* parts are joined by one space */
		scratch->len = 0;
		json_array_foreach(content, i, part)
		{
			json_t	   *t = json_object_get(part, "text");

			if (!json_is_string(t))
				continue;
			if (scratch->len)
				sb_putn(scratch, " ", 1);
			sb_putn(scratch, json_string_value(t), json_string_length(t));
			if (words)
				*words += count_words(json_string_value(t), json_string_length(t));
		}
		*s = scratch->data;
		*n = scratch->len;
	}
}

/* Everything about the endpoint a /v1 request came through. */
typedef struct Endpoint
{
	const char *prefix;			/* "/seg" or "" (points into the URL) */
	size_t		prefix_len;
	const char *tail;			/* after "/v1/" */
	bool		has_override;
	Behaviour	override;
	const char *options;		/* the prefix's options, after its first '+' */
	size_t		options_len;
} Endpoint;

/* What a chat request will be answered with. */
typedef enum AnswerKind
{
	A_OK,
	A_ERROR,
	A_HANG,
	A_CUT,
	A_MALFORMED,
	A_EMPTY,
	A_WRONGTYPE,
	A_NULLCONTENT,
	A_STREAM,					/* plain streamed answer */
	A_STREAMCUT,
	A_STREAMERROR,
	A_HOSTILE
} AnswerKind;

/* Handle POST <prefix>/v1/chat/completions once the body is complete. */
static enum MHD_Result
handle_chat(struct MHD_Connection *conn, ReqCtx *ctx, const Endpoint *ep)
{
	JournalInfo ji;
	json_t	   *root = NULL;
	json_t	   *jmodel;
	json_t	   *jmsgs;
	json_t	   *jstream;
	json_t	   *jso;
	json_error_t jerr;
	const char *model;
	size_t		mlen;
	const char *prompt = "";
	size_t		plen = 0;
	SBuf		scratch;
	long		ptok = 0;
	bool		stream;
	bool		include_usage = false;
	Behaviour	b;
	Options		o;
	AnswerKind	kind = A_OK;
	Behaviour	err = {B_STATUS, 500, 0};
	long		stall_ms = 0;
	long		bigreply = -1;
	uint64_t	seq;
	size_t		i;
	json_t	   *msg;
	struct MHD_Response *r = NULL;
	unsigned	status = 200;
	enum MHD_Result ret;

	memset(&ji, 0, sizeof(ji));
	ji.prefix = ep->prefix;
	ji.prefix_len = ep->prefix_len;
	ji.method = "POST";
	ji.tail = ep->tail;
	ji.body_bytes = ctx->total;
	ji.client_port = client_port(conn);
	ji.auth = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
	ji.conn = conn;

	/* validate the request; every failure is a 400 (413 when too big) */
	{
		const char *why = NULL;
		unsigned	bad = 400;
		const char *code = NULL;
		char		msgbuf[256];

		if (ctx->too_large)
		{
			bad = 413;
			why = "Request body too large (limit 64 MiB).";
			code = "request_too_large";
		}
		else if ((root = json_loadb(ctx->body, ctx->len, JSON_DECODE_ANY, &jerr)) == NULL)
		{
			snprintf(msgbuf, sizeof(msgbuf),
					 "We could not parse the JSON body of your request: %s", jerr.text);
			why = msgbuf;
		}
		else if (!json_is_object(root))
			why = "The request body must be a JSON object.";
		else if (!json_is_string(json_object_get(root, "model")))
			why = "You must provide a model parameter.";
		else if (!json_is_array(json_object_get(root, "messages")))
			why = "Missing required parameter: 'messages'.";
		if (why)
		{
			ji.status = (int) bad;
			seq = journal_record(&ji);
			json_decref(root);
			return answer_error_json(conn, bad, why, "invalid_request_error", code, seq);
		}
	}

	jmodel = json_object_get(root, "model");
	model = json_string_value(jmodel);
	mlen = json_string_length(jmodel);
	jstream = json_object_get(root, "stream");
	stream = json_is_true(jstream);
	jso = json_object_get(root, "stream_options");
	if (json_is_object(jso))
		include_usage = json_is_true(json_object_get(jso, "include_usage"));

	/* prompt = last user message; prompt tokens = words over all messages */
	sb_init(&scratch, 64);
	jmsgs = json_object_get(root, "messages");
	json_array_foreach(jmsgs, i, msg)
	{
		const char *s;
		size_t		n;
		json_t	   *role = json_object_get(msg, "role");
		bool		user = json_is_string(role) && strcmp(json_string_value(role), "user") == 0;

		if (user)
		{
			/* keep the user text alive in scratch if it had to be joined */
			content_text(json_object_get(msg, "content"), &s, &n, &scratch, &ptok);
			prompt = s;
			plen = n;
		}
		else
		{
			SBuf		tmp;

			sb_init(&tmp, 16);
			content_text(json_object_get(msg, "content"), &s, &n, &tmp, &ptok);
			free(tmp.data);
		}
	}

	parse_model(model, mlen, &b, &o);
	/* a prompt "sim:<spec> ..." picks its own behaviour and options */
	if (plen > 4 && memcmp(prompt, "sim:", 4) == 0)
	{
		const char *spec = prompt + 4;
		const char *space = memchr(spec, ' ', plen - 4);

		parse_model(spec, space ? (size_t) (space - spec) : plen - 4, &b, &o);
	}
	down_lookup(false, model, mlen, &b);
	if (ep->has_override)
		b = ep->override;
	if (ep->options_len > 0)
		parse_options(ep->options, ep->options_len, &o);

	ji.model = model;
	ji.model_len = mlen;
	ji.stream = stream;
	ji.attempt = attempts_bump(model, mlen, prompt, plen, ep->prefix, ep->prefix_len);

	/* decide the answer */
	switch (b.kind)
	{
		case B_OK:
			break;
		case B_FLAKY:
			if (ji.attempt <= b.arg)
			{
				kind = A_ERROR;
				err.kind = B_STATUS;
				err.arg = b.arg2;
			}
			break;
		case B_TWOSTEP:
			if (ji.attempt <= 2)
			{
				kind = A_ERROR;
				err.kind = B_STATUS;
				err.arg = ji.attempt == 1 ? b.arg : b.arg2;
			}
			break;
		case B_FORCERETRY:
			if (ji.attempt <= 1)
			{
				kind = A_ERROR;
				err = b;
			}
			break;
		case B_HANG:
			kind = A_HANG;
			break;
		case B_CUT:
			kind = A_CUT;
			break;
		case B_MALFORMED:
			kind = A_MALFORMED;
			break;
		case B_EMPTY:
			kind = A_EMPTY;
			break;
		case B_WRONGTYPE:
			kind = A_WRONGTYPE;
			break;
		case B_NULLCONTENT:
			kind = A_NULLCONTENT;
			break;
		case B_STREAMCUT:
			kind = stream ? A_STREAMCUT : A_CUT;
			break;
		case B_STREAMERROR:
			if (stream)
				kind = A_STREAMERROR;
			else
			{
				kind = A_ERROR;
				err.kind = B_STATUS;
				err.arg = 500;
			}
			break;
		case B_STREAMSTALL:
			stall_ms = b.arg;
			break;
		case B_BIGREPLY:
			bigreply = b.arg;
			break;
		case B_HOSTILE:
			kind = A_HOSTILE;
			break;
		default:
			kind = A_ERROR;
			err = b;
			break;
	}

	/* load mode faults turn a share of successful answers into errors */
	if (kind == A_OK && (cfg.fault_5xx > 0 || cfg.fault_429 > 0))
	{
		double		u = rng_next();

		if (u < cfg.fault_5xx)
		{
			kind = A_ERROR;
			err.kind = B_STATUS;
			err.arg = 500;
		}
		else if (u < cfg.fault_5xx + cfg.fault_429)
		{
			kind = A_ERROR;
			err.kind = B_RATELIMIT;
			err.arg = cfg.fault_retry_after;
		}
	}

	if (kind == A_HANG)
	{
		ji.status = 0;
		journal_record(&ji);
		json_decref(root);
		free(scratch.data);
		hang_until_closed(conn);
		return MHD_NO;
	}

	/* build the answer now; the status must be known for the journal */
	if (kind == A_ERROR)
		status = (unsigned) build_error_answer(&err, model, ji.auth, &r);
	else if (kind == A_HOSTILE)
		status = (unsigned) build_hostile_answer((Hostile) b.arg, model, ji.auth, &r);
	ji.status = (int) status;
	seq = journal_record(&ji);
	if (status < 200)
	{
		long		delay = cfg.latency_ms + o.latency_ms;

		if (r)
			MHD_destroy_response(r);
		json_decref(root);
		free(scratch.data);
		if (delay <= 0 || sim_sleep_ms(delay))
			interim_then_hang(conn, (int) status, seq);
		return MHD_NO;
	}

	if (kind != A_ERROR && kind != A_HOSTILE)
	{
		SBuf		content;
		SBuf		body;

		build_content(&content, prompt, plen, &o, bigreply);
		if (kind == A_OK && stream)
			kind = A_STREAM;
		switch (kind)
		{
			case A_STREAM:
			case A_STREAMCUT:
			case A_STREAMERROR:
				{
					StreamKind sk = kind == A_STREAMCUT ? STREAM_CUT :
						kind == A_STREAMERROR ? STREAM_ERROR : STREAM_OK;
					StreamState *st = build_stream(seq, model, &content, &o, ptok,
												   include_usage, sk, stall_ms);

					if (o.doneopen && sk == STREAM_OK)
						st->hold_fd = connection_fd(conn);

					r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 64 * 1024,
														  stream_reader, st, stream_free);
					if (r == NULL)
						stream_free(st);
					else
					{
						MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
						MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
					}
					stall_ms = 0;	/* applied inside the stream */
				}
				break;
			case A_CUT:
				{
					CutState   *cs = xmalloc(sizeof(CutState));

					completion_json(&cs->body, seq, model, &content, SHAPE_TEXT, ptok, &o);
					cs->half = cs->body.len / 2;
					r = MHD_create_response_from_callback(cs->body.len, 64 * 1024,
														  cut_reader, cs, cut_free);
					if (r == NULL)
						cut_free(cs);
				}
				break;
			case A_MALFORMED:
				sb_init(&body, 64);
				sb_puts(&body, "{\"id\":\"x\",\"choices\":[{\"message\":{\"content\":\"trunc");
				r = response_from_sbuf(&body);
				break;
			default:
				completion_json(&body, seq, model, &content,
								kind == A_EMPTY ? SHAPE_EMPTY_CHOICES :
								kind == A_WRONGTYPE ? SHAPE_NUMBER :
								kind == A_NULLCONTENT ? SHAPE_NULL : SHAPE_TEXT, ptok, &o);
				r = response_from_sbuf(&body);
				break;
		}
		free(content.data);
		if (r && kind != A_STREAM && kind != A_STREAMCUT && kind != A_STREAMERROR)
			MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
	}
	json_decref(root);
	free(scratch.data);
	if (r == NULL)
		return MHD_NO;
	add_gateway_ids(r, seq, &o);

	/* delays go before the status line; this is the connection's own thread */
	{
		long		delay = cfg.latency_ms + o.latency_ms + stall_ms;

		if (delay > 0 && !sim_sleep_ms(delay))
		{
			MHD_destroy_response(r);
			return MHD_NO;
		}
	}
	ret = queue_and_release(conn, status, r);
	return ret;
}

/* Is token one of the '+'-separated options in s[0..n)? */
static bool
has_option_token(const char *s, size_t n, const char *token)
{
	size_t		len = strlen(token);

	while (n > 0)
	{
		const char *plus = memchr(s, '+', n);
		size_t		part = plus ? (size_t) (plus - s) : n;

		if (part == len && memcmp(s, token, len) == 0)
			return true;
		if (plus == NULL)
			break;
		n -= part + 1;
		s = plus + 1;
	}
	return false;
}

/* Handle GET <prefix>/v1/models. */
static enum MHD_Result
handle_models(struct MHD_Connection *conn, ReqCtx *ctx, const Endpoint *ep)
{
	JournalInfo ji;
	SBuf		sb;
	struct MHD_Response *r;
	uint64_t	seq;
	unsigned	status = 200;
	static const char *const ids[] = {"ok", "missing", "flaky-1", "status-500",
	"ratelimit-1", "hang", "gpt-4o-mini"};
	size_t		i;

	memset(&ji, 0, sizeof(ji));
	ji.prefix = ep->prefix;
	ji.prefix_len = ep->prefix_len;
	ji.method = "GET";
	ji.tail = ep->tail;
	ji.body_bytes = ctx->total;
	ji.client_port = client_port(conn);
	ji.auth = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
	ji.conn = conn;

	/* a "down gateway" prefix also fails model listing, if it always fails */
	if (ep->has_override)
	{
		switch (ep->override.kind)
		{
			case B_HANG:
				ji.status = 0;
				journal_record(&ji);
				hang_until_closed(conn);
				return MHD_NO;
			case B_STATUS:
			case B_MISSING:
			case B_RATELIMIT:
			case B_RATELIMITMS:
			case B_RATELIMITDATE:
			case B_QUOTA:
			case B_NORETRY:
				status = (unsigned) build_error_answer(&ep->override, "-", ji.auth, &r);
				ji.status = (int) status;
				seq = journal_record(&ji);
				if (status < 200)
				{
					if (r)
						MHD_destroy_response(r);
					interim_then_hang(conn, (int) status, seq);
					return MHD_NO;
				}
				if (r == NULL)
					return MHD_NO;
				add_request_id(r, seq);
				if (cfg.latency_ms > 0 && !sim_sleep_ms(cfg.latency_ms))
				{
					MHD_destroy_response(r);
					return MHD_NO;
				}
				return queue_and_release(conn, status, r);
			default:
				break;
		}
	}

	ji.status = 200;
	seq = journal_record(&ji);
	sb_init(&sb, 512);
	sb_puts(&sb, "{\"object\":\"list\",\"data\":[");
	/* a prefix with the option "emptylist" (/gw+emptylist) lists no model */
	for (i = 0; i < sizeof(ids) / sizeof(ids[0]) &&
		 !has_option_token(ep->options, ep->options_len, "emptylist"); i++)
		sb_printf(&sb, "%s{\"id\":\"%s\",\"object\":\"model\",\"created\":0,\"owned_by\":\"sim\"}",
				  i ? "," : "", ids[i]);
	sb_puts(&sb, "]}");
	r = response_from_sbuf(&sb);
	if (r == NULL)
		return MHD_NO;
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
	add_request_id(r, seq);
	return queue_and_release(conn, status, r);
}

/* Answer a small text/plain body. */
static enum MHD_Result
answer_text(struct MHD_Connection *conn, unsigned status, const char *text,
			const char *ctype)
{
	struct MHD_Response *r =
		MHD_create_response_from_buffer(strlen(text), (void *) text, MHD_RESPMEM_PERSISTENT);

	if (r == NULL)
		return MHD_NO;
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
	return queue_and_release(conn, status, r);
}

/*
 * Split a URL of the form [/seg]/v1/<tail> into prefix and tail.  Returns
 * false for URLs outside /v1 (those are not journaled).
 */
static bool
parse_v1_url(const char *url, Endpoint *ep)
{
	const char *slash;
	const char *plus;
	size_t		behaviour_len;

	memset(ep, 0, sizeof(*ep));
	ep->prefix = url;
	if (strncmp(url, "/v1/", 4) == 0)
	{
		ep->tail = url + 4;
		ep->has_override = down_lookup(true, "", 0, &ep->override);
		return true;
	}
	if (url[0] != '/' || url[1] == '\0' || url[1] == '/')
		return false;
	slash = strchr(url + 1, '/');
	if (slash == NULL || strncmp(slash, "/v1/", 4) != 0)
		return false;
	ep->prefix_len = (size_t) (slash - url);
	ep->tail = slash + 4;
	/* a prefix's options apply over the model's (a slow gateway) */
	plus = memchr(url + 1, '+', ep->prefix_len - 1);
	behaviour_len = plus ? (size_t) (plus - url - 1) : ep->prefix_len - 1;
	if (plus)
	{
		ep->options = plus + 1;
		ep->options_len = (size_t) (slash - plus - 1);
	}
	/* a prefix naming a failing behaviour overrides the model (gateway down) */
	if (parse_behaviour(url + 1, behaviour_len, &ep->override) &&
		ep->override.kind != B_OK)
		ep->has_override = true;
	if (down_lookup(true, ep->prefix, ep->prefix_len, &ep->override))
		ep->has_override = true;
	return true;
}

/*
 * Handle POST /control/down?model=M|prefix=P[&behaviour=B] (default
 * status-502) and POST /control/up?model=M|prefix=P (neither: all up).
 */
static enum MHD_Result
handle_control(struct MHD_Connection *conn, bool down)
{
	const char *model = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "model");
	const char *prefix = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "prefix");
	const char *spec = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "behaviour");
	Behaviour	b = {B_STATUS, 502, 0};

	if ((model && prefix) || (down && !model && !prefix))
		return answer_text(conn, MHD_HTTP_BAD_REQUEST,
						   "give one of model= and prefix=\n", "text/plain");
	if (spec && !parse_behaviour(spec, strlen(spec), &b))
		return answer_text(conn, MHD_HTTP_BAD_REQUEST,
						   "unknown behaviour\n", "text/plain");
	if (!down_set(down, prefix != NULL, model ? model : prefix, &b))
		return answer_text(conn, MHD_HTTP_BAD_REQUEST,
						   "too many outages, or name too long\n", "text/plain");
	return answer_text(conn, MHD_HTTP_NO_CONTENT, "", "text/plain");
}

/* Route a complete request. */
static enum MHD_Result
dispatch(struct MHD_Connection *conn, const char *url, const char *method, ReqCtx *ctx)
{
	Endpoint	ep;
	bool		is_get = strcmp(method, "GET") == 0;
	bool		is_post = strcmp(method, "POST") == 0;

	if (parse_v1_url(url, &ep))
	{
		JournalInfo ji;
		uint64_t	seq;

		if (is_post && strcmp(ep.tail, "chat/completions") == 0)
			return handle_chat(conn, ctx, &ep);
		if (is_get && strcmp(ep.tail, "models") == 0)
			return handle_models(conn, ctx, &ep);

		/* any other /v1 request is journaled as a 404 */
		memset(&ji, 0, sizeof(ji));
		ji.prefix = ep.prefix;
		ji.prefix_len = ep.prefix_len;
		ji.method = method;
		ji.tail = ep.tail;
		ji.status = 404;
		ji.body_bytes = ctx->total;
		ji.client_port = client_port(conn);
		ji.conn = conn;
		ji.auth = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
											  MHD_HTTP_HEADER_AUTHORIZATION);
		seq = journal_record(&ji);
		return answer_not_found(conn, method, url, seq);
	}
	if (is_get && strcmp(url, "/health") == 0)
		return answer_text(conn, MHD_HTTP_OK, "ok", "text/plain");
	if (is_get && strcmp(url, "/unreachable-port") == 0)
		return answer_text(conn, MHD_HTTP_OK, unreachable_port, "text/plain");
	if (is_get && strcmp(url, "/journal") == 0)
	{
		SBuf		sb;
		struct MHD_Response *r;

		journal_dump(&sb);
		r = response_from_sbuf(&sb);
		if (r == NULL)
			return MHD_NO;
		MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
								"text/tab-separated-values; charset=utf-8");
		return queue_and_release(conn, MHD_HTTP_OK, r);
	}
	if (is_post && (strcmp(url, "/control/down") == 0 ||
					strcmp(url, "/control/up") == 0))
		return handle_control(conn, strcmp(url, "/control/down") == 0);
	if (is_post && strcmp(url, "/journal/reset") == 0)
	{
		journal_reset();
		attempts_reset();
		return answer_text(conn, MHD_HTTP_NO_CONTENT, "", "text/plain");
	}
	return answer_not_found(conn, method, url, 0);
}

/* MHD access handler: accumulate the upload, then dispatch. */
static enum MHD_Result
access_handler(void *cls, struct MHD_Connection *conn, const char *url,
			   const char *method, const char *version, const char *upload_data,
			   size_t *upload_data_size, void **con_cls)
{
	ReqCtx	   *ctx = *con_cls;

	(void) cls;
	(void) version;
	if (ctx == NULL)
	{
		ctx = xmalloc(sizeof(ReqCtx));
		ctx->body = ctx->inline_buf;
		ctx->len = 0;
		ctx->cap = sizeof(ctx->inline_buf);
		ctx->total = 0;
		ctx->too_large = false;
		*con_cls = ctx;
		return MHD_YES;
	}
	if (*upload_data_size != 0)
	{
		ctx_append(ctx, upload_data, *upload_data_size);
		*upload_data_size = 0;
		return MHD_YES;
	}
	return dispatch(conn, url, method, ctx);
}

/* MHD completion callback: free the per-request context. */
static void
request_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
				  enum MHD_RequestTerminationCode toe)
{
	ReqCtx	   *ctx = *con_cls;

	(void) cls;
	(void) conn;
	(void) toe;
	if (ctx == NULL)
		return;
	if (ctx->body != ctx->inline_buf)
		free(ctx->body);
	free(ctx);
	*con_cls = NULL;
}

/* MHD error logger: stderr unless --quiet. */
static void
mhd_logger(void *cls, const char *fmt, va_list ap)
{
	(void) cls;
	if (cfg.quiet)
		return;
	/* hang, cut and friends drop connections on purpose: not worth a line */
	if (strcasestr(fmt, "application reported") != NULL)
		return;
	fputs("ai-gateway-sim: ", stderr);
	vfprintf(stderr, fmt, ap);
}

/* ----------------------------------------------------------------
 *		main
 * ----------------------------------------------------------------
 */

/* Print usage and exit with status code. */
static void
usage(int code)
{
	fprintf(code ? stderr : stdout,
			"usage: ai-gateway-sim [--port N] [--bind ADDR] [--port-file PATH]\n"
			"                      [--latency-ms N] [--fault-5xx RATE] [--fault-429 RATE]\n"
			"                      [--fault-retry-after S] [--seed N] [--no-journal] [--quiet]\n");
	exit(code);
}

/* Parse a command-line integer in [lo, hi] or exit. */
static long
arg_long(const char *opt, const char *v, long lo, long hi)
{
	char	   *end;
	long		x;

	errno = 0;
	x = strtol(v, &end, 10);
	if (errno || *v == '\0' || *end != '\0' || x < lo || x > hi)
	{
		fprintf(stderr, "ai-gateway-sim: bad value for %s: %s\n", opt, v);
		exit(2);
	}
	return x;
}

/* Parse a command-line rate in [0, 1] or exit. */
static double
arg_rate(const char *opt, const char *v)
{
	char	   *end;
	double		x;

	errno = 0;
	x = strtod(v, &end);
	if (errno || *v == '\0' || *end != '\0' || !(x >= 0.0 && x <= 1.0))
	{
		fprintf(stderr, "ai-gateway-sim: bad value for %s: %s (want 0..1)\n", opt, v);
		exit(2);
	}
	return x;
}

/*
 * Open a TCP listener that never accepts, on addr's address and a free
 * port, and fill its accept queue: Linux then drops every further SYN, so a
 * connect to it neither succeeds nor fails until the client gives up, as
 * with a host that is down behind a firewall or too overloaded to accept.
 * The sockets stay open until exit.  Returns the port.
 */
static unsigned
open_unreachable(const struct sockaddr_storage *addr, socklen_t len)
{
	struct sockaddr_storage bound = *addr;
	socklen_t	bound_len = len;
	int			listener;
	int			tries;

	if (bound.ss_family == AF_INET6)
		((struct sockaddr_in6 *) &bound)->sin6_port = 0;
	else
		((struct sockaddr_in *) &bound)->sin_port = 0;
	listener = socket(bound.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (listener < 0 || bind(listener, (struct sockaddr *) &bound, len) != 0 ||
		listen(listener, 0) != 0 ||
		getsockname(listener, (struct sockaddr *) &bound, &bound_len) != 0)
	{
		perror("ai-gateway-sim: unreachable listener");
		exit(1);
	}

	/* connect until one stays pending: the ones that got in fill the queue */
	for (tries = 0; tries < 8; tries++)
	{
		int			probe = socket(bound.ss_family,
								   SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		struct pollfd pfd = {.fd = probe, .events = POLLOUT};

		if (probe < 0 ||
			(connect(probe, (struct sockaddr *) &bound, bound_len) != 0 &&
			 errno != EINPROGRESS))
		{
			perror("ai-gateway-sim: unreachable listener");
			exit(1);
		}
		if (poll(&pfd, 1, 100) == 0)
		{
			close(probe);
			return ntohs(bound.ss_family == AF_INET6 ?
						 ((struct sockaddr_in6 *) &bound)->sin6_port :
						 ((struct sockaddr_in *) &bound)->sin_port);
		}
	}
	fprintf(stderr, "ai-gateway-sim: connections to a full accept queue still get in\n");
	exit(1);
}

/* Write the bound port to path atomically (tmp file + rename). */
static void
write_port_file(const char *path, unsigned port)
{
	size_t		n = strlen(path) + 5;
	char	   *tmp = xmalloc(n);
	FILE	   *f;

	snprintf(tmp, n, "%s.tmp", path);
	f = fopen(tmp, "w");
	if (f == NULL || fprintf(f, "%u\n", port) < 0 || fclose(f) != 0 ||
		rename(tmp, path) != 0)
	{
		fprintf(stderr, "ai-gateway-sim: cannot write port file %s: %s\n", path, strerror(errno));
		exit(1);
	}
	free(tmp);
}

int
main(int argc, char **argv)
{
	int			i;
	sigset_t	sigs;
	int			sig;
	struct sockaddr_storage ss;
	socklen_t	sslen;
	unsigned	flags;
	struct MHD_Daemon *d;
	const union MHD_DaemonInfo *info;
	unsigned	port;

	for (i = 1; i < argc; i++)
	{
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;

#define NEED_VALUE() do { if (v == NULL) usage(2); i++; } while (0)
		if (strcmp(a, "--port") == 0)
		{
			NEED_VALUE();
			cfg.port = arg_long(a, v, 0, 65535);
		}
		else if (strcmp(a, "--bind") == 0)
		{
			NEED_VALUE();
			cfg.bind_addr = v;
		}
		else if (strcmp(a, "--port-file") == 0)
		{
			NEED_VALUE();
			cfg.port_file = v;
		}
		else if (strcmp(a, "--latency-ms") == 0)
		{
			NEED_VALUE();
			cfg.latency_ms = arg_long(a, v, 0, SIM_MAX_MS);
		}
		else if (strcmp(a, "--fault-5xx") == 0)
		{
			NEED_VALUE();
			cfg.fault_5xx = arg_rate(a, v);
		}
		else if (strcmp(a, "--fault-429") == 0)
		{
			NEED_VALUE();
			cfg.fault_429 = arg_rate(a, v);
		}
		else if (strcmp(a, "--fault-retry-after") == 0)
		{
			NEED_VALUE();
			cfg.fault_retry_after = arg_long(a, v, 0, 999999999L);
		}
		else if (strcmp(a, "--seed") == 0)
		{
			NEED_VALUE();
			cfg.seed = (uint64_t) arg_long(a, v, 0, LONG_MAX);
		}
		else if (strcmp(a, "--no-journal") == 0)
			cfg.journal = false;
		else if (strcmp(a, "--quiet") == 0)
			cfg.quiet = true;
		else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)
			usage(0);
		else
		{
			fprintf(stderr, "ai-gateway-sim: unknown argument %s\n", a);
			usage(2);
		}
#undef NEED_VALUE
	}
	if (cfg.fault_5xx + cfg.fault_429 > 1.0)
	{
		fprintf(stderr, "ai-gateway-sim: --fault-5xx + --fault-429 must not exceed 1\n");
		exit(2);
	}
	atomic_store(&rng_state, cfg.seed);

	memset(&ss, 0, sizeof(ss));
	if (strchr(cfg.bind_addr, ':'))
	{
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *) &ss;

		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t) cfg.port);
		if (inet_pton(AF_INET6, cfg.bind_addr, &s6->sin6_addr) != 1)
			goto bad_addr;
		sslen = sizeof(*s6);
	}
	else
	{
		struct sockaddr_in *s4 = (struct sockaddr_in *) &ss;

		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t) cfg.port);
		if (inet_pton(AF_INET, cfg.bind_addr, &s4->sin_addr) != 1)
			goto bad_addr;
		sslen = sizeof(*s4);
	}

	if (cfg.journal)
	{
		journal_ring = calloc(SIM_JOURNAL_MAX, sizeof(JournalEntry));
		if (journal_ring == NULL)
			abort();
	}
	if (pipe(stop_pipe) != 0)
	{
		perror("pipe");
		return 1;
	}

	/* signals go to sigwait below; threads MHD starts inherit this mask */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
		MHD_USE_POLL | MHD_USE_ERROR_LOG;
	if (ss.ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	d = MHD_start_daemon(flags, (uint16_t) cfg.port, NULL, NULL,
						 access_handler, NULL,
						 MHD_OPTION_EXTERNAL_LOGGER, mhd_logger, NULL,
						 MHD_OPTION_SOCK_ADDR, (struct sockaddr *) &ss,
						 MHD_OPTION_CONNECTION_LIMIT, (unsigned int) 1024,
						 MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int) 600,
						 MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t) (128 * 1024),
						 MHD_OPTION_NOTIFY_COMPLETED, request_completed, NULL,
						 MHD_OPTION_END);
	if (d == NULL)
	{
		fprintf(stderr, "ai-gateway-sim: cannot listen on %s:%ld\n", cfg.bind_addr, cfg.port);
		return 1;
	}
	snprintf(unreachable_port, sizeof(unreachable_port), "%u",
			 open_unreachable(&ss, sslen));
	info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
	port = info ? info->port : (unsigned) cfg.port;
	if (cfg.port_file)
		write_port_file(cfg.port_file, port);
	if (!cfg.quiet)
	{
		printf("ai-gateway-sim listening on %s port %u (journal %s)\n",
			   cfg.bind_addr, port, cfg.journal ? "on" : "off");
		fflush(stdout);
	}

	while (sigwait(&sigs, &sig) != 0)
		;

	/* wake every sleeping or hanging connection thread, then stop */
	atomic_store(&stopping, true);
	if (write(stop_pipe[1], "x", 1) != 1)
		perror("write");
	MHD_stop_daemon(d);
	if (!cfg.quiet)
		printf("ai-gateway-sim stopped (signal %d)\n", sig);
	journal_reset();
	attempts_reset();
	free(journal_ring);
	free(attempt_buckets);
	return 0;

bad_addr:
	fprintf(stderr, "ai-gateway-sim: bad --bind address %s\n", cfg.bind_addr);
	return 2;
}
