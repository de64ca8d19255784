/*
 * chat_format.h — how `jamba chat` and `jamba serve` turn a conversation into prompt tokens.
 *
 * A model whose tokenizer has the Jamba chat tokens (jamba_chat_supported) gets the Jamba-1.5+ chat format
 * (jamba_chat_tokenize; its turn ends with the <|eom|> token). A base model without them, such as the bundled
 * demo, gets a plain transcript laid out as a play script, the form base models (and the demo's Shakespeare)
 * continue naturally:
 *
 *     <BOS>SYSTEM\n\nUser:\nUSER\n\nAssistant:\nASSISTANT\n\nUser:\nUSER\n\nAssistant:\n
 *
 * The system text (when given) opens it without a label, each other message is its speaker's label
 * ("User:", "Assistant:", "Tool:") on a line, its text, and a blank line; the generation prompt is
 * "Assistant:\n". A transcript reply ends at the first blank line ("\n\n") or at "\nUser:"
 * (chat_stop_strings), so the model's next speaker is never shown.
 */
#ifndef JAMBA_CLI_CHAT_FORMAT_H
#define JAMBA_CLI_CHAT_FORMAT_H

#include <stdint.h>

#include "jamba.h"

typedef enum chat_style {
    CHAT_STYLE_JAMBA = 0,      /* the tokenizer's chat tokens */
    CHAT_STYLE_TRANSCRIPT = 1, /* the plain transcript above */
} chat_style;

/* The style `tok` gets. */
chat_style chat_style_of(const jamba_tokenizer *tok);

/* "jamba chat format" or "plain transcript (the tokenizer has no chat tokens)", for messages. */
const char *chat_style_name(chat_style style);

/* The stop strings that end an assistant turn in `style` (*n of them; none for the Jamba format, whose turn
 * ends with a token: chat_end_token). Static storage. */
const char *const *chat_stop_strings(chat_style style, int *n);

/* The token that ends an assistant turn (<|eom|>), or -1 in the transcript style. */
jamba_token chat_end_token(const jamba_tokenizer *tok);

/*
 * Render `messages` (roles "system", "user", "assistant", "tool") in the style of `tok` and tokenize them into
 * a new array *ids (free it) of *n_ids tokens. flags as jamba_chat_tokenize: JAMBA_CHAT_GENERATION_PROMPT ends
 * with the assistant's turn opened; JAMBA_CHAT_CONTINUE renders messages that continue a conversation already
 * in a sequence (no BOS or system turn; in the transcript the previous reply is taken to have ended with its
 * blank line, as it does when it stopped at chat_stop_strings). *system_end (may be NULL) receives how many
 * leading tokens render the leading system message alone — the same tokens for every conversation with that
 * system message, which makes them a prefix worth caching — or 0 when there is no system message.
 * JAMBA_ERR_UNSUPPORTED for an unknown role, JAMBA_ERR_OUT_OF_MEMORY.
 */
jamba_status chat_render(const jamba_tokenizer *tok, const jamba_chat_message *messages, int64_t n_messages, int flags,
                         jamba_token **ids, int64_t *n_ids, int64_t *system_end, jamba_error *err);

#endif /* JAMBA_CLI_CHAT_FORMAT_H */
