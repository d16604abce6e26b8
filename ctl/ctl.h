/*
 * ctl.h — what the files of the `kotak` admin command share.
 *
 * Every mistake ends the command with one line on stderr, "kotak: what is
 * wrong; how to mend it", and exit status 2 (KOTAK_EXIT_USAGE); the store is
 * left as it was, since each change is one transaction.
 */
#ifndef KOTAK_CTL_H
#define KOTAK_CTL_H

#include <stdbool.h>
#include <stdio.h>

#include "conf.h"
#include "dns.h"
#include "store.h"

#define KOTAK_EXIT_USAGE 2

/* What a command gets: its arguments after the command words, and -c. */
struct ctl {
    const char *config_arg; /* -c FILE, or NULL */
    int argc;
    char **argv;
};

/* Prints "kotak: ..." on stderr and exits with status 2. */
void ctl_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* Has ctl_die call fn(ctx) once before it writes (NULL: nothing): an import commits there. */
void ctl_before_dying(void (*fn)(void *ctx), void *ctx);

/* Loads the config the way every command does, or dies with its line. */
void ctl_load_conf(const struct ctl *c, struct conf *conf);

/* Opens the configured store (read-only when asked), or dies saying why. */
struct store *ctl_open_store(const struct conf *conf, bool readonly);

/*
 * A domain name as the commands take it (an international one in its xn--
 * form) into out[ADDR_DOMAIN_MAX + 1], or dies saying how to write it.
 */
void ctl_parse_domain(const char *arg, char *out);

/* Dies unless domain is one of the store's, saying how to add it. */
void ctl_need_local_domain(const struct conf *conf, const char *domain);

/* Dies with the sentence that fits a store error rc for the given subject. */
void ctl_die_store(struct store *s, int rc, const char *subject)
    __attribute__((noreturn));

/* True when argv holds --help or -h; the command then prints its usage. */
bool ctl_wants_help(int argc, char **argv);

/*
 * For --help (asked), the whole help of the command usage names ("kotak
 * user ..."), on stdout, exit 0; else usage on stderr as one line, exit 2.
 */
void ctl_usage(const char *usage, bool asked) __attribute__((noreturn));

/* `kotak help COMMAND`: its forms, what it does, one line per option; exit 0 (help.c). */
void ctl_help(const char *command) __attribute__((noreturn));

/* Dies with "unknown command 'WORD'; did you mean '...'?" when a known one is near. */
void ctl_unknown_command(const char *word) __attribute__((noreturn));

/* When command takes a word first (user add|del|...), dies the same way unless argv[0] is one. */
void ctl_check_verb(const struct ctl *c, const char *command);

/*
 * Reads a password: with from_stdin, one line of standard input; else from
 * the terminal without echo, twice to confirm. Dies when neither works or
 * when it has fewer than min_length characters; warns when it is one that
 * attackers try first. Returns a string the caller wipes with explicit_bzero and frees.
 */
char *ctl_read_password(const char *address, bool from_stdin, size_t min_length);

int ctl_init(const struct ctl *c);
int ctl_domain(const struct ctl *c);
int ctl_user(const struct ctl *c);
int ctl_alias(const struct ctl *c);
int ctl_mailbox(const struct ctl *c);
int ctl_stats(const struct ctl *c);
int ctl_backup(const struct ctl *c);
int ctl_restore(const struct ctl *c);
int ctl_run(const struct ctl *c);
int ctl_queue(const struct ctl *c);
int ctl_dkim(const struct ctl *c);
int ctl_check(const struct ctl *c);
int ctl_watch(const struct ctl *c);
int ctl_clientconfig(const struct ctl *c);

/* `kotak check spf|dkim|dmarc`, each with the arguments after its word. */
int ctl_check_spf(const struct ctl *c);
int ctl_check_dkim(const struct ctl *c);
int ctl_check_dmarc(const struct ctl *c);

/*
 * The arguments IP MAIL-FROM [HELO] of `kotak check spf` and `dmarc`: the
 * usage when they are not that, dies on an IP that is none; the sender as
 * the checks take it, without angle brackets ("" for <>; free it).
 */
struct ctl_envelope {
    const char *ip, *helo;
    char *sender;
};
void ctl_check_envelope(const struct ctl *c, const char *usage, struct ctl_envelope *e);

/*
 * `kotak import pop3 USER --from HOST:PORT ...` (import_pop3.c), with the
 * arguments after the word pop3: copies a POP3 maildrop, UIDLs kept.
 */
int ctl_import_pop3(const struct ctl *c);

/* `kotak import mbox|maildir|pop3 ...` and `kotak export mbox|maildir ...` (import.c). */
int ctl_import(const struct ctl *c);
int ctl_export(const struct ctl *c);

/* `kotak doctor`: what a new installation gets wrong, and how to mend each (doctor.c). */
int ctl_doctor(const struct ctl *c);

/*
 * The DKIM record domain's key (data_dir/dkim/, [dkim] selector preferred)
 * asks DNS to publish (dkim.c): 1 with its selector and the record
 * "v=DKIM1; k=rsa; p=..." in *record_r (the caller frees it); 0 when the
 * domain has no key; a negative errno (-EINVAL: the key file is no key);
 * a sentence in err unless 1.
 */
int ctl_dkim_expected(const struct conf *conf, const char *domain,
                      char selector_r[DNS_NAME_MAX + 1], char **record_r, char *err,
                      size_t err_size);

/* Prints a DKIM record as a zone file line, after indent (dkim.c). */
void ctl_dkim_print_record(FILE *f, const char *indent, const char *selector, const char *domain,
                           const char *record);

#endif
