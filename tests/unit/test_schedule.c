/*
 * test_schedule.c — retry times of the outbound queue, with the defaults
 * (5 min first, hourly at most, a warning after 4 h, giving up after 5 days,
 * 2 for reports of ours).
 */
#include "schedule.h"
#include "tap.h"

static const struct schedule defaults = {
    .retry_first = 300,
    .retry_max = 3600,
    .delay_warning = 4 * 3600,
    .give_up = 5 * 86400,
    .bounce_give_up = 2 * 86400,
};

int main(void)
{
    const int64_t t0 = 1700000000;
    /* Tried when each wait is over: 5, 10, 20, 40 min, then hourly. */
    int64_t now = t0, waits[8];
    for (int i = 0; i < 8; i++) {
        int64_t next = schedule_next_try(&defaults, t0, now, false);
        waits[i] = next - now;
        now = next;
    }
    static const int64_t want[8] = {300, 300, 600, 1200, 2400, 3600, 3600, 3600};
    for (int i = 0; i < 8; i++)
        is_int(waits[i], want[i], "wait %d is %lld s", i + 1, (long long)want[i]);

    /* A retry by hand soon after does not push the next one out. */
    is_int(schedule_next_try(&defaults, t0, t0 + 60, false), t0 + 60 + 300,
           "a failure a minute in waits the first wait");
    /* The last try falls at the give-up time; past it, give up. */
    int64_t until = t0 + 5 * 86400;
    is_int(schedule_next_try(&defaults, t0, until - 100, false), until,
           "the last try is at the give-up time, not past it");
    is_int(schedule_next_try(&defaults, t0, until, false), 0, "at the give-up time: give up");
    is_int(schedule_next_try(&defaults, t0, until + 5, false), 0, "past it: give up");
    is_int(schedule_retry_until(&defaults, t0, false), until, "retried until 5 days on");
    /* Reports of ours give up after 2 days. */
    is_int(schedule_next_try(&defaults, t0, t0 + 2 * 86400, true), 0,
           "a report gives up at 2 days");
    is_int(schedule_retry_until(&defaults, t0, true), t0 + 2 * 86400, "a report: until 2 days on");
    ok(schedule_next_try(&defaults, t0, t0 + 2 * 86400 - 1, true) != 0, "... not before");
    /* A clock that went back: never a wait under the first. */
    is_int(schedule_next_try(&defaults, t0, t0 - 50, false), t0 - 50 + 300,
           "a clock set back waits the first wait");

    ok(!schedule_warn_delay(&defaults, t0, t0 + 4 * 3600 - 1, false, false),
       "no warning before 4 h");
    ok(schedule_warn_delay(&defaults, t0, t0 + 4 * 3600, false, false), "a warning at 4 h");
    ok(!schedule_warn_delay(&defaults, t0, t0 + 5 * 3600, true, false), "only once");
    ok(!schedule_warn_delay(&defaults, t0, t0 + 5 * 3600, false, true), "never for a report");
    struct schedule off = defaults;
    off.delay_warning = 0;
    ok(!schedule_warn_delay(&off, t0, t0 + 86400, false, false), "delay_warning 0: never");

    /* Seconds-scale settings, as the tests of the daemon will use. */
    struct schedule fast = {
        .retry_first = 1, .retry_max = 2, .delay_warning = 3, .give_up = 5, .bounce_give_up = 4};
    is_int(schedule_next_try(&fast, t0, t0, false), t0 + 1, "fast: first wait 1 s");
    is_int(schedule_next_try(&fast, t0, t0 + 3, false), t0 + 5,
           "fast: capped at 2 s, then at the end");
    return done_testing();
}
