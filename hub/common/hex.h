/*
 * hex: lower-case hex encoding and strict decoding, for digests and keys.
 */
#ifndef RN_HEX_H
#define RN_HEX_H

#include <stddef.h>

/* 0..15 for a hex digit (either case), -1 otherwise. */
int hex_digit(char c);
/* Writes 2n lower-case digits and a NUL into out (2n + 1 bytes). */
void hex_encode(const unsigned char *in, size_t n, char *out);
/* Decodes exactly 2n digits of in into n bytes. 0, or -1 on a non-digit. */
int hex_decode(const char *in, size_t n, unsigned char *out);

#endif
