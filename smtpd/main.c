/*
 * main.c — kotak-smtpd: `kotak-smtpd [-c FILE]`.
 */
#include <stdio.h>
#include <string.h>

#include "conf.h"
#include "smtpd.h"
#include "util.h"

int main(int argc, char **argv)
{
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) && i + 1 < argc) {
            path = argv[++i];
        } else if (strcmp(argv[i], "--version") == 0 || strcmp(argv[i], "-V") == 0) {
            printf("kotak-smtpd %s\n", KOTAK_VERSION);
            return 0;
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("usage: kotak-smtpd [-c FILE]\n\nReceives mail for kotak: the [smtp], "
                   "[submission] and [submissions] listeners of FILE\n(else $KOTAK_CONFIG, "
                   "./kotak.conf, /etc/kotak/kotak.conf).\n");
            return 0;
        } else {
            fatal(2, "unknown argument '%s'; see kotak-smtpd --help", argv[i]);
        }
    }
    struct conf conf;
    char err[512];
    conf_defaults(&conf);
    if (conf_load(conf_locate(path), &conf, err, sizeof(err)) < 0)
        fatal(2, "%s", err);
    int rc = smtpd_run(&conf);
    conf_free(&conf);
    return rc;
}
