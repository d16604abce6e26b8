/*
 * password.c — reading a new password: from the terminal with echo off, or
 * one line of standard input for scripts (--password-stdin); one shorter
 * than [auth] password_min_length is refused, and one that attackers try
 * first (a short built-in list, the address itself) gets a warning.
 */
#include <stdio.h>
#include <strings.h>
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

/*
 * Passwords that lead every list of leaked ones and every spraying run:
 * the ones a guesser tries before anything else. Compared without case.
 */
static const char *const common_passwords[] = {
    "123456", "123456789", "12345678", "1234567890", "1234567", "12345", "password",
    "password1", "password123", "passw0rd", "p@ssw0rd", "p@ssword", "qwerty", "qwerty123",
    "qwertyuiop", "qwerty12", "1q2w3e4r", "1q2w3e4r5t", "1qaz2wsx", "zaq12wsx", "asdfghjkl",
    "asdf1234", "abc123", "abcd1234", "abcdefg", "abcdefgh", "111111", "11111111", "000000",
    "00000000", "123123", "123123123", "654321", "87654321", "987654321", "666666", "88888888",
    "121212", "112233", "123321", "1111111111", "iloveyou", "iloveyou1", "letmein",
    "letmein1", "welcome", "welcome1", "welcome123", "monkey", "dragon", "sunshine",
    "football", "baseball", "superman", "batman", "princess", "trustno1", "master", "shadow",
    "michael", "jennifer", "charlie", "jordan23", "starwars", "whatever", "freedom",
    "computer", "internet", "secret", "secret123", "changeme", "changeme1", "default",
    "admin", "admin123", "administrator", "root", "toor", "test", "test1234", "testtest",
    "guest", "login", "access", "hello123", "mustang", "michelle", "pokemon", "killer",
    "1234qwer", "qazwsx", "q1w2e3r4", "q1w2e3r4t5", "zxcvbnm", "zxcvbnm1", "aaaaaa",
    "aaaaaaaa", "summer2024", "winter2024", "spring2025", "autumn2025", "mail", "email",
    "postmaster", "kotak", "kotak123",
};

/* Characters, not octets: a UTF-8 continuation octet does not start one. */
static size_t characters(const char *s)
{
    size_t n = 0;
    for (; *s != '\0'; s++)
        n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

static bool is_common(const char *pw, const char *address)
{
    for (size_t i = 0; i < sizeof(common_passwords) / sizeof(common_passwords[0]); i++)
        if (strcasecmp(pw, common_passwords[i]) == 0)
            return true;
    /* The address, or its local part: the first guess of one who knows it. */
    size_t local = strcspn(address, "@");
    return strcasecmp(pw, address) == 0 ||
           (strlen(pw) == local && strncasecmp(pw, address, local) == 0);
}

static void check(char *pw, const char *address, size_t min_length)
{
    if (pw == NULL || pw[0] == '\0')
        ctl_die("the password is empty; give one on the first line of standard input or at "
                "the prompt");
    size_t n = characters(pw);
    if (n < min_length) {
        wipe(pw);
        ctl_die("the password has %zu characters; [auth] password_min_length asks for at "
                "least %zu", n, min_length);
    }
    if (is_common(pw, address))
        fprintf(stderr, "kotak: warning: this password is among the first that attackers "
                        "try; pick another with 'kotak user passwd %s'\n", address);
}

char *ctl_read_password(const char *address, bool from_stdin, size_t min_length)
{
    if (from_stdin) {
        bool too_long;
        char *pw = read_line(stdin, &too_long);
        if (too_long) {
            wipe(pw);
            ctl_die("the password is longer than %d characters; pick a shorter one",
                    PASSWORD_MAX);
        }
        check(pw, address, min_length);
        return pw;
    }
    FILE *tty = isatty(STDIN_FILENO) ? fopen("/dev/tty", "r+") : NULL;
    if (tty == NULL)
        ctl_die("no terminal to ask the password on; pipe it in with --password-stdin");
    char prompt[ADDR_MAX + 32];
    snprintf(prompt, sizeof(prompt), "Password for %s: ", address);
    char *pw = ask(tty, prompt);
    check(pw, address, min_length);
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
