/*
 * password.c — reading a new password: from the terminal with echo off, or
 * one line of standard input for scripts (--password-stdin).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "ctl.h"
#include "sasl.h"
#include "util.h"

/* What a login can carry: SASL and POP3 PASS keep this many octets. */
#define PASSWORD_MAX SASL_FIELD_MAX

/* One line from f without its line end, or NULL at end of file or when too long. */
static char *read_line(FILE *f, bool *too_long)
{
    char *line = xmalloc(PASSWORD_MAX + 2);
    *too_long = false;
    if (fgets(line, PASSWORD_MAX + 2, f) == NULL) {
        free(line);
        return NULL;
    }
    size_t n = strlen(line);
    if (n > 0 && line[n - 1] == '\n')
        line[--n] = '\0';
    else if (n > PASSWORD_MAX)
        *too_long = true;
    if (n > 0 && line[n - 1] == '\r')
        line[--n] = '\0';
    return line;
}

static void wipe(char *pw)
{
    if (pw != NULL) {
        explicit_bzero(pw, strlen(pw));
        free(pw);
    }
}

/* Asks once on the terminal tty with echo off. */
static char *ask(FILE *tty, const char *prompt)
{
    struct termios old, quiet;
    int fd = fileno(tty);
    fputs(prompt, stderr);
    fflush(stderr);
    bool restore = tcgetattr(fd, &old) == 0;
    if (restore) {
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        tcsetattr(fd, TCSAFLUSH, &quiet);
    }
    bool too_long;
    char *pw = read_line(tty, &too_long);
    if (restore)
        tcsetattr(fd, TCSAFLUSH, &old);
    fputc('\n', stderr);
    if (too_long) {
        wipe(pw);
        ctl_die("the password is longer than %d characters; pick a shorter one", PASSWORD_MAX);
    }
    return pw;
}

static void check(const char *pw)
{
    if (pw == NULL || pw[0] == '\0')
        ctl_die("the password is empty; give one on the first line of standard input or at "
                "the prompt");
}

char *ctl_read_password(const char *address, bool from_stdin)
{
    if (from_stdin) {
        bool too_long;
        char *pw = read_line(stdin, &too_long);
        if (too_long) {
            wipe(pw);
            ctl_die("the password is longer than %d characters; pick a shorter one",
                    PASSWORD_MAX);
        }
        check(pw);
        return pw;
    }
    FILE *tty = isatty(STDIN_FILENO) ? fopen("/dev/tty", "r+") : NULL;
    if (tty == NULL)
        ctl_die("no terminal to ask the password on; pipe it in with --password-stdin");
    char prompt[ADDR_MAX + 32];
    snprintf(prompt, sizeof(prompt), "Password for %s: ", address);
    char *pw = ask(tty, prompt);
    check(pw);
    char *again = ask(tty, "Again: ");
    bool same = again != NULL && strcmp(pw, again) == 0;
    wipe(again);
    fclose(tty);
    if (!same) {
        wipe(pw);
        ctl_die("the two passwords differ; run the command again");
    }
    return pw;
}
