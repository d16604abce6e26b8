/* dmarc.c: being written (issue 13). */
typedef int dmarc_placeholder;
