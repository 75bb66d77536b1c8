/* SPDX-License-Identifier: MIT */
/*
 * Freestanding helpers: the mem* functions the compiler may call, line
 * formatting and number parsing. Used from both rings.
 */
#include "ref.h"

void *memset(void *d, int c, size_t n)
{
	unsigned char *p = d;

	while (n--)
		*p++ = (unsigned char)c;
	return d;
}

void *memcpy(void *d, const void *s, size_t n)
{
	unsigned char *p = d;
	const unsigned char *q = s;

	while (n--)
		*p++ = *q++;
	return d;
}

void *memmove(void *d, const void *s, size_t n)
{
	unsigned char *p = d;
	const unsigned char *q = s;

	if (p <= q || p >= q + n)
		return memcpy(d, s, n);
	while (n--)
		p[n] = q[n];
	return d;
}

int memcmp(const void *a, const void *b, size_t n)
{
	const unsigned char *p = a, *q = b;

	for (; n; n--, p++, q++)
		if (*p != *q)
			return *p < *q ? -1 : 1;
	return 0;
}

size_t strlen(const char *s)
{
	size_t n = 0;

	while (s[n])
		n++;
	return n;
}

/* Room is kept for the final '\n'. */
static void line_char(struct line *l, char c)
{
	if (l->len < REF_LINE_MAX - 1)
		l->buf[l->len++] = c;
}

void line_init(struct line *l, const char *s)
{
	l->len = 0;
	line_str(l, s);
}

void line_str(struct line *l, const char *s)
{
	while (*s)
		line_char(l, *s++);
}

void line_u64(struct line *l, uint64_t v)
{
	char tmp[20];
	int n = 0;

	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (n)
		line_char(l, tmp[--n]);
}

void line_hex(struct line *l, uint64_t v)
{
	int shift = 60;

	line_str(l, "0x");
	while (shift > 0 && !(v >> shift))
		shift -= 4;
	for (; shift >= 0; shift -= 4)
		line_char(l, "0123456789abcdef"[(v >> shift) & 15]);
}

void line_kv(struct line *l, const char *key, uint64_t v)
{
	line_char(l, ' ');
	line_str(l, key);
	line_char(l, '=');
	line_u64(l, v);
}

void line_kx(struct line *l, const char *key, uint64_t v)
{
	line_char(l, ' ');
	line_str(l, key);
	line_char(l, '=');
	line_hex(l, v);
}

void line_put(struct line *l)
{
	l->buf[l->len++] = '\n';
	sys_write(l->buf, l->len);
	l->len = 0;
}

bool parse_u64(const char **sp, uint64_t *out)
{
	const char *s = *sp;
	unsigned int base = 10, digits = 0;
	uint64_t v = 0;

	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		base = 16;
		s += 2;
	}
	for (;; s++, digits++) {
		unsigned int d;

		if (*s >= '0' && *s <= '9')
			d = (unsigned int)(*s - '0');
		else if (base == 16 && *s >= 'a' && *s <= 'f')
			d = (unsigned int)(*s - 'a' + 10);
		else if (base == 16 && *s >= 'A' && *s <= 'F')
			d = (unsigned int)(*s - 'A' + 10);
		else
			break;
		v = v * base + d;
	}
	if (!digits)
		return false;
	if (*s == 'k' || *s == 'K') {
		v <<= 10;
		s++;
	} else if (*s == 'm' || *s == 'M') {
		v <<= 20;
		s++;
	} else if (*s == 'g' || *s == 'G') {
		v <<= 30;
		s++;
	}
	*sp = s;
	*out = v;
	return true;
}

/* Scrambles the bits of @x (multiply and xor-shift rounds). */
uint64_t mix64(uint64_t x)
{
	x ^= x >> 31;
	x *= 0x9e3779b97f4a7c15ULL;
	x ^= x >> 27;
	x *= 0xd6e8feb86659fd93ULL;
	x ^= x >> 32;
	return x;
}
