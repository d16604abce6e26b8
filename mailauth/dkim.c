/* dkim.c: being written (issue 13). */
typedef int dkim_placeholder;
