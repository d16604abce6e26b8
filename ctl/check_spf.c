/* check_spf.c: being written (issue 13). */
#include "ctl.h"
int ctl_check_spf(const struct ctl *c) { (void)c; ctl_die("kotak check spf: not built yet"); }
