/*
 * progress.h — the progress bar of `kotak import` and `kotak export` on a
 * terminal: messages, octets, rate, time left, drawn on stderr at most ten
 * times a second, and nothing at all when stderr is no terminal (a script's
 * log gets the summary line alone).
 */
#ifndef KOTAK_PROGRESS_H
#define KOTAK_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>

/*
 * The caller keeps done_msgs and done_bytes up to date and draws. total_bytes
 * is what the whole job reads (files' sizes, a POP3 listing's), so time
 * left is told by octets; 0 when not known ahead (a Maildir's files are not
 * looked at one by one before), and then it is told by messages;
 * total_msgs 0 is a count not known ahead (an mbox).
 */
struct progress {
    bool tty;
    bool drawn;
    const char *verb;
    uint64_t total_bytes, done_bytes;
    uint64_t total_msgs, done_msgs;
    int64_t start, last;
    /* Called before each write to stderr, which can block (a pager that stopped
     * reading, Ctrl-S on a terminal): an import commits its open batch there. */
    void (*before_write)(void *ctx);
    void *ctx;
};

/* Starts the clock of *p; verb ("importing") leads the line and must outlive *p. */
void progress_start(struct progress *p, const char *verb, uint64_t msgs, uint64_t bytes);

/*
 * Draws the bar if a tenth of a second went by since the last time, or
 * always when last; the last one stays on its own line.
 */
void progress_draw(struct progress *p, bool last);

/* Ends the line of a bar drawn, so that an error message can follow on a line of its own. */
void progress_break(struct progress *p);

#endif
