/* psl.c: being written (issue 13). */
typedef int psl_placeholder;
