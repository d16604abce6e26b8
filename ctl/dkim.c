/* dkim.c: being written (issue 13). */
#include "ctl.h"
int ctl_dkim(const struct ctl *c) { (void)c; ctl_die("kotak dkim: not built yet"); }
int ctl_check_dkim(const struct ctl *c) { (void)c; ctl_die("kotak check dkim: not built yet"); }
