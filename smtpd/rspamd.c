/* rspamd.c: being written (issue 13). */
typedef int rspamd_placeholder;
