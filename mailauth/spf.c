/* spf.c: being written (issue 13). */
typedef int spf_placeholder;
