/*
 * schedule.h — when a queued recipient is tried again, when its sender is
 * told it is late, and when it is given up: pure arithmetic on times in
 * seconds, from the [relay] keys.
 *
 * The wait after a temporary failure grows with the message's age, as
 * Postfix's backoff does: never less than retry_first, never more than
 * retry_max, otherwise as old as the message is (5 min, 10, 20, 40, then
 * hourly with the defaults). Being tied to the age rather than to the count
 * of attempts, a `kotak queue retry` does not push later tries further out.
 */
#ifndef KOTAK_SCHEDULE_H
#define KOTAK_SCHEDULE_H

#include <stdbool.h>
#include <stdint.h>

struct schedule {
    int64_t retry_first, retry_max;  /* seconds */
    int64_t delay_warning;           /* a "delayed" report after this long; 0: never */
    int64_t give_up, bounce_give_up; /* mail, and reports of ours */
};

/*
 * After a temporary failure at now of mail queued at created: the time of
 * the next try, or 0 when the mail has waited give_up (bounce_give_up for
 * a report) and must fail for good. The last try falls at the give-up time
 * itself rather than a whole wait past it.
 */
int64_t schedule_next_try(const struct schedule *s, int64_t created, int64_t now, bool bounce);

/* Whether a "delayed" report is due now: once, after delay_warning, never for a report. */
bool schedule_warn_delay(const struct schedule *s, int64_t created, int64_t now, bool warned,
                         bool bounce);

/* Until when it is retried: the report's Will-Retry-Until. */
int64_t schedule_retry_until(const struct schedule *s, int64_t created, bool bounce);

#endif
