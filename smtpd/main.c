/*
 * main.c — kotak-smtpd: `kotak-smtpd [-c FILE] [--check-config]`.
 */
#include "daemon.h"
#include "smtpd.h"

int main(int argc, char **argv)
{
    static const struct daemon_info info = {
        .name = "kotak-smtpd",
        .about = "Receives mail for kotak on the [smtp], [submission] and [submissions]\n"
                 "listeners of FILE, and delivers mail for other domains.",
        .tls_needed = smtpd_tls_needed,
        .run = smtpd_run,
    };
    return daemon_main(argc, argv, &info);
}
