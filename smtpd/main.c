/*
 * main.c — kotak-smtpd, not built yet: it says so and exits, so that
 * `kotak run` and scripts get a clear answer rather than a missing file.
 */
#include <stdio.h>

int main(void)
{
    fprintf(stderr, "kotak-smtpd: not implemented yet in this version of kotak\n");
    return 1;
}
