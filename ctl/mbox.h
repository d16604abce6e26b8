/*
 * mbox.h — the pure parts of moving mail in and out of mbox files and
 * Maildirs (`kotak import`, `kotak export`): From_ lines, mboxrd's quoting,
 * line ends, the X-UIDL field, file names and Dovecot's dovecot-uidlist.
 *
 * Formats. An mbox is messages each after a From_ line ("From " at the
 * start of a line); mboxrd (what kotak writes) quotes every line that
 * matches ^>*From  with one more '>', and its reader takes one '>' off
 * every line that matches ^>+From . mboxo only quotes ^From , so a line
 * that was ">From " in the message cannot be told from a quoted "From ":
 * kotak reads every mbox as mboxrd, so such a line of an mboxo file loses
 * its '>' (a line in a reply quoted "> From ", with a space, is no such
 * line). The empty line before a From_ line (and one at the end of the
 * file) belongs to the mbox, not to the message.
 *
 * Line ends. The store keeps a message as SMTP carried it, lines ended by
 * CRLF; files have LF, or CRLF, or both. mbox_to_crlf puts a CR before
 * each LF that has none and leaves the rest as it is (Dovecot's rule for
 * POP3's RETR, so a message imported from a file is the octets Dovecot
 * served from it); mbox_from_crlf makes each CRLF an LF. A stored message
 * comes back from its export as it was when it has no bare LF, no CR
 * before a CRLF ("\r\r\n", a bare CR at a line end: its file has "\r\n",
 * which import keeps) and ends with its line end (or is empty):
 * mbox_crlf_exact says which, and export counts the others.
 *
 * Nothing here does I/O, reads the clock or allocates.
 */
#ifndef KOTAK_MBOX_H
#define KOTAK_MBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Whether the line (without its LF) is a From_ line. */
bool mbox_is_from_line(const char *line, size_t len);

/* How many '>' mboxrd's reader takes off the line: 1 for ^>+From , else 0. */
size_t mbox_unquote_len(const char *line, size_t len);

/* Whether mboxrd's writer quotes the line (^>*From ). */
bool mbox_needs_quote(const char *line, size_t len);

/*
 * The time of a From_ line, "From SENDER Www Mmm dd hh:mm:ss yyyy" (ctime's
 * form, anything after the year allowed), taken as UTC: 1 with *t_r set,
 * 0 when it does not parse.
 */
int mbox_from_time(const char *line, size_t len, int64_t *t_r);

/* ctime's form of t (UTC), "Www Mmm dd hh:mm:ss yyyy", into out[25]. */
void mbox_ctime(int64_t t, char out[25]);

/*
 * A message as read from a file into the form the store keeps: a CR is
 * put before each LF that has no CR before it, and nothing else changes,
 * so a file with CRLF lines stays as it is and one with some of each gets
 * CRLF lines (never "\r\r\n" made of a CRLF). A message that does not end
 * with a LF (and is not empty) gets CRLF at its end: POP3's RETR ends the
 * last line anyway, so this is the message as every client receives it,
 * and LIST's size then counts what RETR sends. out has room for
 * mbox_crlf_len(in, len) octets; returns that length.
 */
size_t mbox_to_crlf(const uint8_t *in, size_t len, uint8_t *out);

/* The length mbox_to_crlf gives for in, without writing it (at most 2 * len + 2). */
size_t mbox_crlf_len(const uint8_t *in, size_t len);

/* A stored message into a file's form: each CRLF becomes LF; anything else stays. out has
 * room for len. */
size_t mbox_from_crlf(const uint8_t *in, size_t len, uint8_t *out);

/*
 * Whether mbox_to_crlf(mbox_from_crlf(msg)) == msg, that is whether an
 * export read back gives msg: true exactly when every LF of msg has a CR
 * before it, no CR comes right before such a CRLF ("\r\r\n"), and msg is
 * empty or ends with LF. False, then, for a message holding a bare LF
 * (kotak's SMTP never stores one), a bare CR at a line end, or no line end
 * at its end (an import before mbox_to_crlf supplied it; SMTP's never
 * lacks it). Export counts these.
 */
bool mbox_crlf_exact(const uint8_t *msg, size_t len);

/*
 * Takes the first X-UIDL field out of a message's header section (in the
 * file's form, LF or CRLF lines, continuation lines included): its value,
 * unfolded and trimmed, into uidl (NUL-terminated, cut at uidl_size - 1),
 * and the field's octets out of msg, *len shrinking. 1 when there was one,
 * 0 when not.
 */
int mbox_take_xuidl(uint8_t *msg, size_t *len, char *uidl, size_t uidl_size);

/*
 * A Maildir file name's delivery time: its leading decimal number (the
 * "1700000000" of "1700000000.M1P2.host:2,S"). 1 with *t_r, 0 when none.
 */
int mbox_maildir_time(const char *name, int64_t *t_r);

/* One line of a dovecot-uidlist, parsed. Strings point into the line. */
struct mbox_uidlist_rec {
    uint32_t uid;
    const char *pop3_uidl; /* its P field, NULL when none */
    size_t pop3_uidl_len;
    const char *name; /* the file name, up to its ':' (the base name Dovecot matches by) */
    size_t name_len;
};

/*
 * The header line of a dovecot-uidlist: "3 V<uidvalidity> N<next> ..."
 * (version 3) or "1 <uidvalidity> <next>" (version 1). 0 with *version_r
 * and *uidvalidity_r set, -1 when it is neither.
 */
int mbox_uidlist_header(const char *line, size_t len, int *version_r, uint32_t *uidvalidity_r);

/*
 * A record line: "<uid> [<key><value> ...] :<filename>" (version 3) or
 * "<uid> <filename>" (version 1). 0 with *rec filled, -1 when it is not one.
 */
int mbox_uidlist_record(const char *line, size_t len, int version, struct mbox_uidlist_rec *rec);

/* Dovecot's default POP3 UIDL, pop3_uidl_format = %08Xu%08Xv (lower-case hex: its
 * %X), into out[17]. */
void mbox_dovecot_uidl(uint32_t uid, uint32_t uidvalidity, char out[17]);

#endif
