/* check_dmarc.c: being written (issue 13). */
#include "ctl.h"
int ctl_check_dmarc(const struct ctl *c) { (void)c; ctl_die("kotak check dmarc: not built yet"); }
