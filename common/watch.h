/*
 * watch.h — the live view's events: what each SMTP and POP3 session says,
 * secrets already replaced, in a ring that a daemon writes and viewers
 * read (`kotak watch`, the web page).
 *
 * Each daemon has one ring, a file in the data folder mapped in memory
 * (watch/smtp.ring, watch/pop3.ring): a fixed number of slots, each event
 * in the slot of its number. The daemon writes and never waits: a viewer
 * that falls behind finds its events overwritten and is told how many it
 * missed. Viewers say they are there by pushing a time forward in the
 * ring's header; while nobody has for a few seconds, the daemon writes
 * nothing at all (watch_on is false), so the view costs nothing when
 * nobody watches. The ring outlives the daemon: a restarted daemon goes
 * on numbering, so a viewer's place (an event number) stays valid.
 */
#ifndef KOTAK_WATCH_H
#define KOTAK_WATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conf.h"

#define WATCH_DIR "watch" /* in the data folder */
#define WATCH_SLOTS 4096
#define WATCH_TEXT_MAX 960 /* octets of an event's text; longer ones are cut */
#define WATCH_KEEPALIVE_MS 5000 /* how long a viewer's visit counts */

enum watch_kind {
    WATCH_OPEN,   /* a connection: "CLIENT -> LISTENER" */
    WATCH_CLIENT, /* a line from the client, secrets replaced */
    WATCH_SERVER, /* a line of a reply */
    WATCH_TLS,    /* TLS began: "VERSION CIPHER" */
    WATCH_NOTE,   /* what the server noticed: a message stored, a bad line */
    WATCH_CLOSE,  /* the connection ended */
    WATCH_MAIL,   /* a step of one stored message's journey: "WHAT id=N key=value ..." */
};

enum watch_proto { WATCH_SMTP, WATCH_POP3 };

struct watch_event {
    uint64_t seq;     /* its number in the ring, from 1 */
    uint64_t time_us; /* wall clock */
    char session[24]; /* the session's id, as the logs name it */
    enum watch_proto proto;
    enum watch_kind kind;
    bool tls;       /* said inside TLS */
    bool cut;       /* the text was longer than WATCH_TEXT_MAX */
    size_t len;     /* of text */
    char text[WATCH_TEXT_MAX + 1]; /* NUL-terminated; may hold any octet before it */
};

const char *watch_kind_name(enum watch_kind k);
const char *watch_proto_name(enum watch_proto p);

/* --- the daemon's side ----------------------------------------------------- */

struct watch;

/*
 * Opens (creating it, mode 0600) the ring at path for writing; an existing
 * ring is continued. Returns NULL with a sentence in err.
 */
struct watch *watch_open(const char *path, char *err, size_t err_size);

/* Whether someone watches now: when not, callers skip building events. NULL: false. */
bool watch_on(const struct watch *w);

/* Writes one event (its seq and time are the ring's). text[0..len) is cut at WATCH_TEXT_MAX. */
void watch_put(struct watch *w, const char *session, enum watch_proto proto, enum watch_kind kind,
               bool tls, const char *text, size_t len);

/* Unmaps and frees *w, sets it to NULL. NULL is a no-op. */
void watch_close(struct watch **w);

/*
 * A daemon's ring, when [web] listen is set: WATCH_DIR/NAME.ring in the
 * working folder (the data folder, once the daemon has entered it). NULL
 * when the view is off, or when the ring cannot be made (that is logged:
 * mail goes on without the view).
 */
struct watch *watch_start(const struct conf *conf, const char *name);

/*
 * An event written as printf does, when someone watches (a connection
 * opened, closed; a message's step). A WATCH_MAIL event is a word, then
 * key=value pairs, the message's store id first ("stored id=42 size=980");
 * a value a client chose (an address) never holds a space, and a free
 * text (a reply) comes last.
 */
void watch_say(struct watch *w, const char *session, enum watch_proto proto, enum watch_kind kind,
               bool tls, const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/* --- a viewer's side ------------------------------------------------------- */

struct watch_reader;

/*
 * Opens the ring at path to read it from event `from` on (0: the events it
 * still holds, at most `history` of them). Returns NULL with a sentence in
 * err (no ring yet: the daemon has not run with the view on).
 */
struct watch_reader *watch_reader_open(const char *path, uint64_t from, size_t history, char *err,
                                       size_t err_size);

/*
 * The next event into *ev: 1 when there was one; 0 when there is none yet;
 * or a negative count, -N: N events were overwritten before they were read
 * (the reader goes on after them).
 */
long watch_reader_next(struct watch_reader *r, struct watch_event *ev);

/* The number of the next event the reader will read. */
uint64_t watch_reader_position(const struct watch_reader *r);

/* Whether an event waits to be read (or a gap to be told). */
bool watch_reader_pending(const struct watch_reader *r);

/* Says the viewer is there for the next WATCH_KEEPALIVE_MS; call it every second or so. */
void watch_reader_keepalive(struct watch_reader *r);

void watch_reader_close(struct watch_reader **r);

#endif
