/*-------------------------------------------------------------------------
 *
 * openai_wire.h
 *	  The OpenAI chat-completions JSON: building requests, reading answers.
 *
 *-------------------------------------------------------------------------
 */
#ifndef AIR_OPENAI_WIRE_H
#define AIR_OPENAI_WIRE_H

/* The parts of a chat request that are the same for every route. */
typedef struct ChatPrompt
{
	const char *system_prompt;	/* NULL: no system message */
	int			max_tokens;		/* 0: not sent */
	bool		has_temperature;
	double		temperature;
} ChatPrompt;

/*
 * What a response body says.  Strings are palloc'd in the current memory
 * context, converted to the server encoding, and NULL when absent.
 */
typedef struct ChatAnswer
{
	char	   *content;		/* choices[0].message.content */
	char	   *finish_reason;	/* choices[0].finish_reason */
	char	   *model;			/* the model that answered */
	int			prompt_tokens;	/* usage; -1 when absent */
	int			completion_tokens;
	char	   *error_message;	/* error.message (or error as a string) */
	char	   *error_type;		/* error.type */
	char	   *error_code;		/* error.code */
	const char *problem;		/* why it is not a usable answer, or NULL */
} ChatAnswer;

extern char *wire_build_chat_request(const ChatPrompt *common,
									 const char *prompt, const char *model,
									 size_t *len);
extern void wire_parse_chat_response(const char *body, size_t len,
									 ChatAnswer *answer);

#endif							/* AIR_OPENAI_WIRE_H */
