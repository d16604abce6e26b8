/*
 * annotate.h — what the live view says about each line: the RFC section
 * of a command, what a reply's code means (RFC 5321 4.2, the enhanced
 * status codes of RFC 3463 and the IANA registry of RFC 5248, POP3's
 * response codes of RFC 2449 and 3206), and whether RFC 5321 4.3.2 lists a
 * reply for the command it answers. Pure tables; no allocation.
 */
#ifndef KOTAK_ANNOTATE_H
#define KOTAK_ANNOTATE_H

#include <stdbool.h>
#include <stddef.h>

#include "watch.h"

struct annotation {
    const char *name; /* the command as the RFC names it: "EHLO" */
    const char *ref;  /* "RFC 5321 4.1.1.1" */
    const char *url;  /* its section at rfc-editor.org */
    const char *what; /* what it does, one short sentence */
};

/* A client's command line: true with its annotation, false for a line that is no command known. */
bool annotate_command(enum watch_proto proto, const char *line, size_t len, struct annotation *a);

/*
 * What a reply line means, one sentence into out[0..size) (NUL-terminated;
 * its length returned): SMTP "250 2.1.0 ..." gives the code's meaning, its
 * first digit's and the enhanced code's class, subject and detail; POP3
 * "+OK"/"-ERR" and a response code in brackets. 0 when the line is no reply.
 */
size_t annotate_reply(enum watch_proto proto, const char *line, size_t len, char *out, size_t size);

/*
 * Whether RFC 5321 4.3.2 (with RFC 3207 for STARTTLS and RFC 4954 for AUTH)
 * lists reply code for command verb ("" for the greeting); 500, 501 and 421
 * may answer any command. A verb the tables lack: true (nothing to flag).
 */
bool annotate_smtp_reply_listed(const char *verb, int code);

/* The codes RFC 5321 4.3.2 lists for verb, ending in 0 (without the 421, 500 and 501 any command
 * may get); NULL for a verb the tables lack. */
const int *annotate_smtp_replies(const char *verb);

#endif
