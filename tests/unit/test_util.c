// SPDX-License-Identifier: Apache-2.0
/* Unit tests of userspace/lib/util.c: addresses, CIDRs, number and bool parsing, times. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "intern.h"
#include "util.h"

static void test_addr_parse(void **state)
{
	static const struct {
		const char *in;
		int ret;
		int family;
		const char *formatted; /* sm_addr_format of the result */
	} cases[] = {
		{"10.0.0.1", 0, AF_INET, "10.0.0.1"},
		{"0.0.0.0", 0, AF_INET, "0.0.0.0"},
		{"255.255.255.255", 0, AF_INET, "255.255.255.255"},
		{"::1", 0, AF_INET6, "::1"},
		{"::", 0, AF_INET6, "::"},
		{"fc42::1", 0, AF_INET6, "fc42::1"},
		{"FC42:0:0::1", 0, AF_INET6, "fc42::1"},
		{"::ffff:10.0.0.1", 0, AF_INET6, "::ffff:10.0.0.1"},
		{"", -EINVAL, 0, NULL},
		{"10.0.0", -EINVAL, 0, NULL},
		{"10.0.0.256", -EINVAL, 0, NULL},
		{"10.0.0.1 ", -EINVAL, 0, NULL},
		{" 10.0.0.1", -EINVAL, 0, NULL},
		{"localhost", -EINVAL, 0, NULL},
		{"[::1]", -EINVAL, 0, NULL},
		{"fc42::1::2", -EINVAL, 0, NULL},
		{"10.0.0.1/8", -EINVAL, 0, NULL},
		{"fe80::1%eth0", -EINVAL, 0, NULL},
	};
	char what[128], buf[64];

	for (size_t i = 0; i < SM_ARRAY_SIZE(cases); i++) {
		struct sm_addr a;
		int ret = sm_addr_parse(cases[i].in, &a);

		snprintf(what, sizeof(what), "sm_addr_parse('%s')", cases[i].in);
		ASSERT_EQ(ret, cases[i].ret, what);
		if (ret)
			continue;
		ASSERT_EQ(a.family, cases[i].family, what);
		ASSERT_STR_EQ(sm_addr_format(&a, buf, sizeof(buf)), cases[i].formatted, what);
	}
}

static void test_addr_bytes_and_equal(void **state)
{
	struct sm_addr a, b;

	ASSERT_EQ(sm_addr_parse("10.1.2.3", &a), 0, "parse v4");
	ASSERT_EQ(a.bytes[0], 10, "network order byte 0");
	ASSERT_EQ(a.bytes[3], 3, "network order byte 3");
	for (int i = 4; i < 16; i++)
		ASSERT_EQ(a.bytes[i], 0, "IPv4 rest zero");
	ASSERT_EQ(sm_addr_parse("10.1.2.3", &b), 0, "parse v4 again");
	ASSERT_EQ(sm_addr_equal(&a, &b), 1, "same v4 equal");
	ASSERT_EQ(sm_addr_parse("10.1.2.4", &b), 0, "parse other v4");
	ASSERT_EQ(sm_addr_equal(&a, &b), 0, "different v4 not equal");
	ASSERT_EQ(sm_addr_parse("::a01:203", &b), 0, "parse v6 with same low bytes");
	ASSERT_EQ(sm_addr_equal(&a, &b), 0, "v4 and v6 never equal");
	ASSERT_EQ(sm_addr_parse("fc00::1", &a), 0, "parse v6");
	ASSERT_EQ(sm_addr_parse("fc00:0::1", &b), 0, "parse v6 other spelling");
	ASSERT_EQ(sm_addr_equal(&a, &b), 1, "v6 spellings equal");
}

static void test_addrport_parse(void **state)
{
	static const struct {
		const char *in;
		int ret;
		const char *addr;
		int port;
	} cases[] = {
		{"127.0.0.1:15001", 0, "127.0.0.1", 15001},
		{"0.0.0.0:1", 0, "0.0.0.0", 1},
		{"10.0.0.1:65535", 0, "10.0.0.1", 65535},
		{"[::1]:15001", 0, "::1", 15001},
		{"[fc42::2]:8080", 0, "fc42::2", 8080},
		{"10.0.0.1:0x50", 0, "10.0.0.1", 80},
		{"10.0.0.1:0", -EINVAL, NULL, 0},
		{"10.0.0.1:65536", -EINVAL, NULL, 0},
		{"10.0.0.1:-1", -EINVAL, NULL, 0},
		{"10.0.0.1:", -EINVAL, NULL, 0},
		{"10.0.0.1", -EINVAL, NULL, 0},
		{":80", -EINVAL, NULL, 0},
		{"10.0.0.1:80:90", -EINVAL, NULL, 0},
		{"10.0.0.1:http", -EINVAL, NULL, 0},
		{"10.0.0.1: 80", -EINVAL, NULL, 0},
		{"::1:80", -EINVAL, NULL, 0},
		{"[::1]80", -EINVAL, NULL, 0},
		{"[::1]", -EINVAL, NULL, 0},
		{"[::1:80", -EINVAL, NULL, 0},
		{"[]:80", -EINVAL, NULL, 0},
		{"[10.0.0.1]:80", 0, "10.0.0.1", 80},
		{"host.example:80", -EINVAL, NULL, 0},
		{"", -EINVAL, NULL, 0},
	};
	char what[128], buf[64];

	for (size_t i = 0; i < SM_ARRAY_SIZE(cases); i++) {
		struct sm_addr a;
		uint16_t port = 0;
		int ret = sm_addrport_parse(cases[i].in, &a, &port);

		snprintf(what, sizeof(what), "sm_addrport_parse('%s')", cases[i].in);
		ASSERT_EQ(ret, cases[i].ret, what);
		if (ret)
			continue;
		ASSERT_STR_EQ(sm_addr_format(&a, buf, sizeof(buf)), cases[i].addr, what);
		ASSERT_EQ(port, cases[i].port, what);
	}
}

static void test_cidr_contains(void **state)
{
	static const struct {
		const char *outer, *inner;
		bool want;
	} cases[] = {
		{"10.0.0.0/8", "10.1.0.0/16", true},   {"10.0.0.0/8", "10.0.0.0/8", true},
		{"10.1.0.0/16", "10.0.0.0/8", false},  {"10.0.0.0/8", "11.0.0.0/8", false},
		{"10.0.0.0/9", "10.127.1.1/32", true}, {"10.0.0.0/9", "10.128.0.0/32", false},
		{"0.0.0.0/0", "192.168.1.1/32", true}, {"0.0.0.0/0", "::1/128", false},
		{"fc00::/7", "fd00::1/128", true},     {"fc00::/7", "fe00::/8", false},
	};
	struct sm_addr o, in;
	uint8_t op, ip;

	(void) state;
	for (size_t i = 0; i < SM_ARRAY_SIZE(cases); i++) {
		assert_int_equal(sm_cidr_parse(cases[i].outer, &o, &op), 0);
		assert_int_equal(sm_cidr_parse(cases[i].inner, &in, &ip), 0);
		ASSERT_EQ(sm_cidr_contains(&o, op, &in, ip), cases[i].want, cases[i].inner);
	}
}

static void test_cidr_parse(void **state)
{
	static const struct {
		const char *in;
		int ret;
		int prefix;
	} cases[] = {
		{"10.0.0.0/8", 0, 8},
		{"10.11.0.0/24", 0, 24},
		{"10.11.0.1/32", 0, 32},
		{"0.0.0.0/0", 0, 0},
		{"fc00::/7", 0, 7},
		{"fc42::/64", 0, 64},
		{"::/0", 0, 0},
		{"fc42::1/128", 0, 128},
		/* host bits set */
		{"10.0.0.1/8", -EINVAL, 0},
		{"10.11.0.128/24", -EINVAL, 0},
		{"10.11.0.1/31", -EINVAL, 0},
		{"1.0.0.0/0", -EINVAL, 0},
		{"fc42::1/64", -EINVAL, 0},
		{"fd00::/7", -EINVAL, 0},
		{"::1/127", -EINVAL, 0},
		/* malformed */
		{"10.0.0.0/33", -EINVAL, 0},
		{"fc00::/129", -EINVAL, 0},
		{"10.0.0.0/", -EINVAL, 0},
		{"10.0.0.0", -EINVAL, 0},
		{"/8", -EINVAL, 0},
		{"10.0.0.0/-1", -EINVAL, 0},
		{"10.0.0.0/8/8", -EINVAL, 0},
		{"10.0.0.0/a", -EINVAL, 0},
		{"ten/8", -EINVAL, 0},
	};
	char what[128];

	for (size_t i = 0; i < SM_ARRAY_SIZE(cases); i++) {
		struct sm_addr a;
		uint8_t prefix = 0xff;
		int ret = sm_cidr_parse(cases[i].in, &a, &prefix);

		snprintf(what, sizeof(what), "sm_cidr_parse('%s')", cases[i].in);
		ASSERT_EQ(ret, cases[i].ret, what);
		if (!ret)
			ASSERT_EQ(prefix, cases[i].prefix, what);
	}
}

static void test_parse_u64(void **state)
{
	static const struct {
		const char *in;
		uint64_t min, max;
		int ret;
		uint64_t want;
	} cases[] = {
		{"0", 0, 10, 0, 0},
		{"10", 0, 10, 0, 10},
		{"11", 0, 10, -ERANGE, 0},
		{"0", 1, 10, -ERANGE, 0},
		{"1", 1, 3600, 0, 1},
		{"3600", 1, 3600, 0, 3600},
		{"3601", 1, 3600, -ERANGE, 0},
		{"0x5ec0de", 1, UINT32_MAX, 0, 0x5ec0de},
		{"0xffffffff", 1, UINT32_MAX, 0, UINT32_MAX},
		{"0x100000000", 1, UINT32_MAX, -ERANGE, 0},
		{"18446744073709551615", 0, UINT64_MAX, 0, UINT64_MAX},
		{"18446744073709551616", 0, UINT64_MAX, -ERANGE, 0},
		{"99999999999999999999999", 0, UINT64_MAX, -ERANGE, 0},
		{"", 0, 10, -EINVAL, 0},
		{"-1", 0, 10, -EINVAL, 0},
		{"+1", 0, 10, -EINVAL, 0},
		{" 1", 0, 10, -EINVAL, 0},
		{"1 ", 0, 10, -EINVAL, 0},
		{"1s", 0, 10, -EINVAL, 0},
		{"1.5", 0, 10, -EINVAL, 0},
		{"0x", 0, 10, -EINVAL, 0},
		{"ten", 0, 10, -EINVAL, 0},
	};
	char what[128];

	for (size_t i = 0; i < SM_ARRAY_SIZE(cases); i++) {
		uint64_t v = 12345;
		int ret = sm_parse_u64(cases[i].in, cases[i].min, cases[i].max, &v);

		snprintf(what, sizeof(what), "sm_parse_u64('%s', %llu..%llu)", cases[i].in,
			 (unsigned long long) cases[i].min, (unsigned long long) cases[i].max);
		ASSERT_EQ(ret, cases[i].ret, what);
		if (!ret)
			ASSERT_EQ(v == cases[i].want, 1, what);
		else
			ASSERT_EQ(v, 12345, "output untouched on error");
	}
	ASSERT_EQ(sm_parse_u64(NULL, 0, 1, &(uint64_t){0}), -EINVAL, "NULL string");
}

static void test_parse_bool(void **state)
{
	static const struct {
		const char *in;
		int ret;
		bool want;
	} cases[] = {
		{"true", 0, true},     {"false", 0, false},   {"yes", 0, true},	 {"no", 0, false},
		{"on", 0, true},       {"off", 0, false},     {"1", 0, true},	 {"0", 0, false},
		{"TRUE", 0, true},     {"False", 0, false},   {"", -EINVAL, 0},	 {"2", -EINVAL, 0},
		{"maybe", -EINVAL, 0}, {"true ", -EINVAL, 0}, {"t", -EINVAL, 0},
	};
	char what[128];

	for (size_t i = 0; i < SM_ARRAY_SIZE(cases); i++) {
		bool v = false;
		int ret = sm_parse_bool(cases[i].in, &v);

		snprintf(what, sizeof(what), "sm_parse_bool('%s')", cases[i].in);
		ASSERT_EQ(ret, cases[i].ret, what);
		if (!ret)
			ASSERT_EQ(v, cases[i].want, what);
	}
}

static void test_strlcpy(void **state)
{
	char buf[4];

	ASSERT_EQ(sm_strlcpy(buf, "abc", sizeof(buf)), 0, "fits exactly");
	ASSERT_STR_EQ(buf, "abc", "copied");
	ASSERT_EQ(sm_strlcpy(buf, "abcd", sizeof(buf)), -ENAMETOOLONG, "one too long");
	ASSERT_STR_EQ(buf, "abc", "truncated and terminated");
	ASSERT_EQ(sm_strlcpy(buf, "", sizeof(buf)), 0, "empty");
	ASSERT_STR_EQ(buf, "", "empty copied");
}

static void test_sockaddr_round_trip(void **state)
{
	static const char *const addrs[] = {"10.0.0.1", "127.0.0.1", "::1", "fc42::7"};
	struct sockaddr_storage ss;
	char what[128], buf[64];

	for (size_t i = 0; i < SM_ARRAY_SIZE(addrs); i++) {
		struct sm_addr a, back;
		uint16_t port = 0;
		socklen_t len;

		snprintf(what, sizeof(what), "sockaddr round trip of %s", addrs[i]);
		ASSERT_EQ(sm_addr_parse(addrs[i], &a), 0, what);
		len = sm_addr_to_sockaddr(&a, 8080, &ss);
		ASSERT_EQ(len,
			  a.family == AF_INET ? sizeof(struct sockaddr_in)
					      : sizeof(struct sockaddr_in6),
			  what);
		ASSERT_EQ(ss.ss_family, a.family, what);
		if (a.family == AF_INET)
			ASSERT_EQ(((struct sockaddr_in *) &ss)->sin_port, htons(8080),
				  "port in "
				  "network order");
		ASSERT_EQ(sm_addr_from_sockaddr((struct sockaddr *) &ss, &back, &port), 0, what);
		ASSERT_EQ(port, 8080, what);
		ASSERT_EQ(sm_addr_equal(&a, &back), 1, what);
		ASSERT_STR_EQ(sm_addr_format(&back, buf, sizeof(buf)), addrs[i], what);
	}
	memset(&ss, 0, sizeof(ss));
	ss.ss_family = AF_UNIX;
	ASSERT_EQ(sm_addr_from_sockaddr((struct sockaddr *) &ss, &(struct sm_addr){0}, NULL),
		  -EAFNOSUPPORT, "AF_UNIX refused");
}

static void test_format_time(void **state)
{
	static const struct {
		int64_t ns;
		const char *want;
	} cases[] = {
		{0, "1970-01-01T00:00:00.000000Z"},
		{999, "1970-01-01T00:00:00.000000Z"},
		{1000, "1970-01-01T00:00:00.000001Z"},
		{1795982462123456789LL, "2026-11-29T20:01:02.123456Z"},
		/* the same second again (its date and time are kept), the next, and back */
		{1795982462999999999LL, "2026-11-29T20:01:02.999999Z"},
		{1795982463000000000LL, "2026-11-29T20:01:03.000000Z"},
		{1795982462000001000LL, "2026-11-29T20:01:02.000001Z"},
		{951782400000000000LL, "2000-02-29T00:00:00.000000Z"},
	};
	char buf[40];

	for (size_t i = 0; i < SM_ARRAY_SIZE(cases); i++)
		ASSERT_STR_EQ(sm_format_time_ns(cases[i].ns, buf, sizeof(buf)), cases[i].want,
			      "sm_format_time_ns");
}

/* The clocks agree on their units and with the kernel's (time(), the offset). */
static void test_clocks(void **state)
{
	int64_t m0 = sm_mono_ns(), ms = sm_mono_ms(), s = sm_mono_s(), m1 = sm_mono_ns();
	int64_t real = sm_real_ns(), off = sm_mono_to_real_offset_ns();
	int64_t wall = (int64_t) time(NULL) * 1000000000LL;

	(void) state;
	assert_true(m0 > 0 && m1 >= m0);
	assert_true(ms >= m0 / 1000000 && ms <= m1 / 1000000);
	assert_true(s >= m0 / 1000000000 && s <= m1 / 1000000000);
	/* generous bounds: the calls above may be descheduled */
	assert_true(llabs(real - wall) < 5 * 1000000000LL);
	assert_true(llabs(real - sm_mono_ns() - off) < 5 * 1000000000LL);
}

static void test_error_set(void **state)
{
	struct sm_error err;
	char big[1024];

	sm_error_set(&err, "%s:%d: %s", "f.yaml", 3, "bad");
	ASSERT_STR_EQ(err.msg, "f.yaml:3: bad", "formatted");
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	sm_error_set(&err, "%s", big);
	ASSERT_EQ(strlen(err.msg), sizeof(err.msg) - 1, "truncated to the buffer");
	sm_error_set(NULL, "ignored %d", 1); /* must not crash */
}

/* Interned strings: one copy per distinct string, stable, shared; NULL and "" are "". */
static void test_intern(void **state)
{
	struct sm_intern_stats before, after;
	char buf[32];
	const char *a, *b;

	(void) state;
	sm_intern_stats(&before);
	snprintf(buf, sizeof(buf), "spiffe://td/%d", 7);
	a = sm_intern(buf);
	snprintf(buf, sizeof(buf), "spiffe://td/%d", 7); /* the same text at the same address */
	buf[0] = 'S';					 /* the caller's buffer changes... */
	assert_string_equal(a, "spiffe://td/7");	 /* ...the interned copy does not */
	b = sm_intern("spiffe://td/7");
	ASSERT_EQ(a == b, 1, "one copy per distinct string");
	ASSERT_EQ(sm_intern("spiffe://td/8") != a, 1, "another string, another copy");
	ASSERT_EQ(sm_intern_n("spiffe://td/7xyz", 13) == a, 1, "the first n bytes");
	ASSERT_EQ(sm_intern_n("spiffe://td/7\0zz", 16) == a, 1, "stops at a NUL");
	assert_string_equal(sm_intern(NULL), "");
	assert_string_equal(sm_intern(""), "");
	assert_string_equal(sm_intern_n("abc", 0), "");
	sm_intern_stats(&after);
	ASSERT_EQ(after.strings - before.strings, 2, "two distinct strings kept");
	ASSERT_EQ(after.bytes - before.bytes, 2 * sizeof("spiffe://td/7"), "their bytes");
	ASSERT_EQ(after.refused, before.refused, "none refused");
	assert_string_equal(sm_str(NULL), "");
	ASSERT_EQ(sm_str_empty(NULL) && sm_str_empty("") && !sm_str_empty("x"), 1, "empty");
}

/* The state files' writer: whole file or nothing, no temp file left behind. */
static void test_write_file_atomic(void **state)
{
	char dir[] = "/tmp/sockmesh-test-util-XXXXXX", path[64], tmp[72], buf[32] = {0};
	struct stat st;
	FILE *f;

	(void) state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/state.json", dir);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	ASSERT_EQ(sm_write_file_atomic(path, "first", 5, 0600), 0, "a new file");
	ASSERT_EQ(sm_write_file_atomic(path, "second", 6, 0644), 0, "replaced");
	f = fopen(path, "r");
	assert_non_null(f);
	assert_int_equal(fread(buf, 1, sizeof(buf) - 1, f), 7);
	fclose(f);
	ASSERT_STR_EQ(buf, "second\n", "the last write, with its newline");
	ASSERT_EQ(stat(path, &st), 0, "stat");
	ASSERT_EQ(st.st_mode & 0700, 0600, "the owner reads and writes it");
	ASSERT_EQ(access(tmp, F_OK) < 0 && errno == ENOENT, 1, "no temp file left");
	snprintf(path, sizeof(path), "%s/missing/state.json", dir);
	ASSERT_EQ(sm_write_file_atomic(path, "x", 1, 0600), -ENOENT, "a missing directory");
	snprintf(path, sizeof(path), "%s/state.json", dir);
	unlink(path);
	ASSERT_EQ(rmdir(dir), 0, "nothing else was created");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_addr_parse),
		cmocka_unit_test(test_addr_bytes_and_equal),
		cmocka_unit_test(test_addrport_parse),
		cmocka_unit_test(test_cidr_parse),
		cmocka_unit_test(test_cidr_contains),
		cmocka_unit_test(test_parse_u64),
		cmocka_unit_test(test_parse_bool),
		cmocka_unit_test(test_strlcpy),
		cmocka_unit_test(test_sockaddr_round_trip),
		cmocka_unit_test(test_format_time),
		cmocka_unit_test(test_error_set),
		cmocka_unit_test(test_clocks),
		cmocka_unit_test(test_intern),
		cmocka_unit_test(test_write_file_atomic),
	};

	return cmocka_run_group_tests_name("util", tests, NULL, NULL);
}
