/* mtasts.c: being written (issue 13). */
typedef int mtasts_placeholder;
