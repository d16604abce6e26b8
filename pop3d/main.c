/*
 * main.c — kotak-pop3d: `kotak-pop3d [-c FILE]`.
 */
#include "daemon.h"
#include "pop3d.h"

int main(int argc, char **argv)
{
    return daemon_main(argc, argv, "kotak-pop3d",
                       "Serves kotak's maildrops over POP3 on the [pop3] and [pop3s] listeners\n"
                       "of FILE.",
                       pop3d_run);
}
