/*
 * main.c — kotak-smtpd: `kotak-smtpd [-c FILE]`.
 */
#include "daemon.h"
#include "smtpd.h"

int main(int argc, char **argv)
{
    return daemon_main(argc, argv, "kotak-smtpd",
                       "Receives mail for kotak on the [smtp], [submission] and [submissions]\n"
                       "listeners of FILE.",
                       smtpd_run);
}
