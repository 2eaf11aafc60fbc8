/*-------------------------------------------------------------------------
 *
 * gateway_text.c
 *	  The one boundary for text from a gateway on its way to a log or error.
 *
 * A gateway is not trusted: what it sends may be in no valid encoding, may
 * contain control characters that break a log line, and may echo the API
 * key it was sent (in a header, a field or an error message, in any case,
 * with control characters inside).  Every string that came from a gateway
 * passes through gateway_text before it is stored in ai_call_log
 * (call_log.c packs those columns through it) or shown in an error message
 * (runner.c builds an attempt's error text through it).  The result:
 *
 *	- is valid in the server encoding: a byte that does not start a valid
 *	  character becomes '?'.  The wire layer (openai_wire.c) has already
 *	  converted the fields it decoded from UTF-8 into the server encoding;
 *	  what else a gateway controls, such as the bytes the JSON parser quotes
 *	  in its syntax errors, is checked here.  '?' rather than U+FFFD, so
 *	  that every client encoding can show it;
 *	- has every API key replaced by GATEWAY_TEXT_REDACTED, matched without
 *	  regard to ASCII case and skipping ASCII control characters inside it;
 *	- has every ASCII control character replaced by a space;
 *	- fits in the caller's buffer, cut at a character boundary (never inside
 *	  a key's replacement).
 *
 * An error or WARNING about a call goes to the client in its encoding, and
 * PostgreSQL replaces a message it cannot convert by a conversion error
 * (22P05), losing the SQLSTATE a handler waits for.  So such messages pass
 * through gateway_text_for_client, which puts '?' for every character the
 * client encoding cannot represent.
 *
 * gateway_text is a single forward pass that stops once the buffer is full, so a long
 * or hostile text costs time in proportion to what is kept (plus the length
 * of a key tried at each position), and it allocates nothing: error cleanup
 * can use it.  Keys are printable ASCII (secrets.c refuses others), so a
 * match can never start inside a multibyte character: in every server
 * encoding the bytes of such a character are all >= 0x80.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"

#include "gateway_text.h"

static int	key_length_at(const char *s, const List *keys);

/* An ASCII control character: C0 or DEL. */
#define IS_ASCII_CONTROL(c) ((unsigned char) (c) < 0x20 || (c) == 0x7f)

/*
 * Write text into dest (dest_size bytes, NUL included), made safe as the
 * header comment describes; returns the length written.
 */
int
gateway_text(char *dest, int dest_size, const char *text, const List *keys)
{
	int			encoding = GetDatabaseEncoding();
	const char *s = text;
	const char *end = text + strlen(text);
	int			out = 0;

	Assert(dest_size > 0);
	while (s < end)
	{
		const char *piece = s;
		int			piece_len = 1;
		int			consumed = 1;
		int			key_len = key_length_at(s, keys);

		if (key_len > 0)
		{
			piece = GATEWAY_TEXT_REDACTED;
			piece_len = strlen(GATEWAY_TEXT_REDACTED);
			consumed = key_len;
		}
		else if (IS_ASCII_CONTROL(*s))
			piece = " ";
		else if (IS_HIGHBIT_SET(*s))
		{
			int			char_len = pg_encoding_verifymbchar(encoding, s, end - s);

			if (char_len < 0)
				piece = "?";
			else
				piece_len = consumed = char_len;
		}
		if (out + piece_len > dest_size - 1)
			break;
		memcpy(dest + out, piece, piece_len);
		out += piece_len;
		s += consumed;
	}
	dest[out] = '\0';
	return out;
}

/* gateway_text into a new palloc'd string of at most max_bytes. */
char *
gateway_text_copy(const char *text, int max_bytes, const List *keys)
{
	char	   *result = palloc(max_bytes + 1);

	gateway_text(result, max_bytes + 1, text, keys);
	return result;
}

/*
 * A palloc'd copy of text (valid in the server encoding) in which every
 * character the client encoding cannot represent is '?'.
 */
char *
gateway_text_for_client(const char *text)
{
	int			server = GetDatabaseEncoding();
	int			client = pg_get_client_encoding();
	Oid			proc;
	StringInfoData out;
	const char *s;

	/* PostgreSQL converts nothing in these cases */
	if (server == client || server == PG_SQL_ASCII || client == PG_SQL_ASCII)
		return pstrdup(text);
	proc = FindDefaultConversionProc(server, client);
	if (!OidIsValid(proc))
		return pstrdup(text);

	initStringInfo(&out);
	s = text;
	while (*s)
	{
		int			char_len = pg_mblen(s);
		unsigned char converted[MAX_MULTIBYTE_CHAR_LEN * MAX_CONVERSION_GROWTH + 1];

		if (!IS_HIGHBIT_SET(*s) ||
			pg_do_encoding_conversion_buf(proc, server, client,
										  (unsigned char *) s, char_len,
										  converted, sizeof(converted),
										  true) == char_len)
			appendBinaryStringInfo(&out, s, char_len);
		else
			appendStringInfoChar(&out, '?');
		s += char_len;
	}
	return out.data;
}

/*
 * The length of the API key that starts at s, ignoring ASCII case and the
 * control characters inside it; 0 when no key starts there.
 */
static int
key_length_at(const char *s, const List *keys)
{
	const ListCell *lc;

	foreach(lc, keys)
	{
		const char *key = lfirst(lc);
		const char *p = s;

		while (*key != '\0' && *p != '\0')
		{
			if (p > s && IS_ASCII_CONTROL(*p))
				p++;
			else if (pg_ascii_tolower((unsigned char) *p) ==
					 pg_ascii_tolower((unsigned char) *key))
				p++, key++;
			else
				break;
		}
		if (*key == '\0' && p > s)
			return p - s;
	}
	return 0;
}
