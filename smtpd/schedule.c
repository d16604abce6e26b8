/*
 * schedule.c — retry times for the outbound queue; see schedule.h.
 */
#include "schedule.h"

int64_t schedule_retry_until(const struct schedule *s, int64_t created, bool bounce)
{
    return created + (bounce ? s->bounce_give_up : s->give_up);
}

int64_t schedule_next_try(const struct schedule *s, int64_t created, int64_t now, bool bounce)
{
    int64_t until = schedule_retry_until(s, created, bounce);
    if (now >= until)
        return 0;
    int64_t age = now > created ? now - created : 0;
    int64_t wait = age < s->retry_first ? s->retry_first : age;
    if (wait > s->retry_max)
        wait = s->retry_max;
    int64_t next = now + wait;
    return next < until ? next : until;
}

bool schedule_warn_delay(const struct schedule *s, int64_t created, int64_t now, bool warned,
                         bool bounce)
{
    return !warned && !bounce && s->delay_warning > 0 && now - created >= s->delay_warning;
}
