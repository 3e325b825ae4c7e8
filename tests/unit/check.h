/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Named checks for the cmocka unit tests: each takes what is being checked as
 * its last argument and, on failure, prints it with both sides of the
 * comparison before failing the test (cmocka's fail_msg adds file and line).
 */
#ifndef SOCKMESH_TESTS_CHECK_H
#define SOCKMESH_TESTS_CHECK_H

/* cmocka.h needs these before it */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <string.h>

#include <cmocka.h>

/* Integers (any width, signed or not), compared as long long. */
#define ASSERT_EQ(got, want, what)                                                                 \
	do {                                                                                       \
		long long got_ = (long long) (got), want_ = (long long) (want);                    \
		if (got_ != want_)                                                                 \
			fail_msg("%s: got %lld, want %lld", (what), got_, want_);                  \
	} while (0)

/* got >= min, for counts that may run higher than the minimum. */
#define ASSERT_GE(got, min, what)                                                                  \
	do {                                                                                       \
		long long got_ = (long long) (got), min_ = (long long) (min);                      \
		if (got_ < min_)                                                                   \
			fail_msg("%s: got %lld, want at least %lld", (what), got_, min_);          \
	} while (0)

#define ASSERT_NOT_NULL(ptr, what)                                                                 \
	do {                                                                                       \
		if ((ptr) == NULL)                                                                 \
			fail_msg("%s: got NULL", (what));                                          \
	} while (0)

/* Equal C strings; a NULL got fails. */
#define ASSERT_STR_EQ(got, want, what)                                                             \
	do {                                                                                       \
		const char *got_ = (got), *want_ = (want);                                         \
		if (!got_ || strcmp(got_, want_) != 0)                                             \
			fail_msg("%s:\n  got  '%s'\n  want '%s'", (what), got_ ? got_ : "(null)",  \
				 want_);                                                           \
	} while (0)

/* haystack contains needle; a NULL haystack or needle fails. */
#define ASSERT_HAS(haystack, needle, what)                                                         \
	do {                                                                                       \
		const char *h_ = (haystack), *n_ = (needle);                                       \
		if (!h_ || !n_ || !strstr(h_, n_))                                                 \
			fail_msg("%s: '%s' does not contain '%s'", (what), h_ ? h_ : "(null)",     \
				 n_ ? n_ : "(null)");                                              \
	} while (0)

#endif /* SOCKMESH_TESTS_CHECK_H */
