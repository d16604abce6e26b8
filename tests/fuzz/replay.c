/*
 * replay.c — runs a fuzz target over saved inputs without libFuzzer, so
 * that the committed corpora are ordinary tests in every build (the normal
 * one and the ASan+UBSan one) and a saved crash keeps failing until fixed.
 *
 *   replay-NAME PATH...   each PATH a file or a folder of files
 *
 * Each input runs in a child process, so that one crash (an abort() from a
 * property check, a sanitizer report, a hang cut by an alarm) is reported
 * as "not ok" for its file and the others still run. Output is TAP.
 */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fuzz.h"

#define REPLAY_TIMEOUT_S 60 /* per input; a hang is a finding */

static int n_tests, n_failed;

/* Reads the whole file; NULL with errno on failure. */
static uint8_t *read_all(const char *path, size_t *len_r)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    size_t cap = 4096, len = 0;
    uint8_t *p = malloc(cap);
    for (;;) {
        if (len == cap) {
            cap *= 2;
            p = realloc(p, cap);
        }
        size_t got = fread(p + len, 1, cap - len, f);
        len += got;
        if (got == 0)
            break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(p);
        errno = EIO;
        return NULL;
    }
    *len_r = len;
    return p;
}

static void run_one(const char *path)
{
    size_t len = 0;
    uint8_t *data = read_all(path, &len);
    n_tests++;
    if (data == NULL) {
        printf("not ok %d - %s # cannot read: %s\n", n_tests, path, strerror(errno));
        n_failed++;
        return;
    }
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        alarm(REPLAY_TIMEOUT_S);
        /* An exact-size copy, so that the sanitizers see a read past the end. */
        uint8_t *copy = malloc(len ? len : 1);
        memcpy(copy, data, len);
        LLVMFuzzerTestOneInput(copy, len);
        free(copy);
        free(data);
        exit(0); /* exit, not _exit: LeakSanitizer reports at exit */
    }
    free(data);
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) < 0) {
        printf("not ok %d - %s # cannot run: %s\n", n_tests, path, strerror(errno));
        n_failed++;
        return;
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        printf("ok %d - %s\n", n_tests, path);
        return;
    }
    n_failed++;
    if (WIFSIGNALED(status))
        printf("not ok %d - %s # killed by signal %d%s\n", n_tests, path, WTERMSIG(status),
               WTERMSIG(status) == SIGALRM ? " (timeout)" : "");
    else
        printf("not ok %d - %s # exit status %d\n", n_tests, path, WEXITSTATUS(status));
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

static void run_path(const char *path)
{
    struct stat st;
    if (stat(path, &st) < 0) {
        printf("not ok %d - %s # %s\n", ++n_tests, path, strerror(errno));
        n_failed++;
        return;
    }
    if (!S_ISDIR(st.st_mode)) {
        run_one(path);
        return;
    }
    struct dirent **names;
    int n = scandir(path, &names, NULL, by_name);
    if (n < 0) {
        printf("not ok %d - %s # %s\n", ++n_tests, path, strerror(errno));
        n_failed++;
        return;
    }
    for (int i = 0; i < n; i++) {
        const char *name = names[i]->d_name;
        if (name[0] != '.') {
            size_t sz = strlen(path) + strlen(name) + 2;
            char *full = malloc(sz);
            snprintf(full, sz, "%s/%s", path, name);
            struct stat fst;
            if (stat(full, &fst) == 0 && S_ISREG(fst.st_mode))
                run_one(full);
            free(full);
        }
        free(names[i]);
    }
    free(names);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s FILE|FOLDER...\n", argv[0]);
        return 2;
    }
    for (int i = 1; i < argc; i++)
        run_path(argv[i]);
    printf("1..%d\n", n_tests);
    return n_failed ? 1 : 0;
}
