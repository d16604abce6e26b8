/*
 * main.c — kotak-pop3d: `kotak-pop3d [-c FILE] [--check-config]`.
 */
#include "daemon.h"
#include "pop3d.h"

int main(int argc, char **argv)
{
    static const struct daemon_info info = {
        .name = "kotak-pop3d",
        .about = "Serves kotak's maildrops over POP3 on the [pop3] and [pop3s] listeners\n"
                 "of FILE.",
        .tls_needed = pop3d_tls_needed,
        .run = pop3d_run,
    };
    return daemon_main(argc, argv, &info);
}
