/*****************************************************************************\
 *  asbb_lua.c - Lua 5.1 module "asbb": libasbb.so for job_submit/lua and
 *  jobcomp/lua.
 *****************************************************************************
 *  local asbb = require "asbb"
 *
 *  asbb.init([config_path])  -> ok (boolean), msg
 *  asbb.admit(job)           -> rc, kind, msg, admin_comment, hold_id, amount
 *  asbb.modify(job)          -> rc, kind, msg, admin_comment, hold_id, amount
 *  asbb.settle(job_end)      -> rc, msg
 *  asbb.abi_version()        -> integer
 *
 *  job is a table (or a Slurm job_desc proxy) with the field names of
 *  asbb_job_t: account, partition, user_name, user_id, time_limit,
 *  min_nodes, max_nodes, num_tasks, cpus_per_task, min_cpus, pn_min_memory,
 *  tres_per_node, tres_per_job, array_inx, admin_comment, job_id_str,
 *  cluster. Memory may instead be given as min_mem_per_cpu or
 *  min_mem_per_node (MB), which take precedence: Lua numbers are doubles
 *  and cannot carry pn_min_memory's MEM_PER_CPU bit (bit 63).
 *
 *  job_end has the field names of asbb_job_end_t: cluster, job_id,
 *  array_job_id, array_task_id, account, partition, user_name,
 *  admin_comment, start_time, end_time, job_state, nodes, cpus, tres_alloc;
 *  when user_name is missing, a user_id field is resolved to the name.
 *
 *  Numbers: a missing, negative, non-integral or out-of-range number means
 *  "unset" (NO_VAL, NO_VAL16, NO_VAL64); any value >= 2^63 is NO_VAL64.
 *  rc is an asbb_rc (asbb.OK, asbb.REFUSED, asbb.ERR_*); kind is one of
 *  "none", "free", "held", "refused", "shadow", "db_accept". Strings come
 *  back as "" when empty. Money is only ever a decimal string.
 *
 *  The module does not link liblua: slurmctld loads liblua5.1 with
 *  RTLD_GLOBAL before any script runs.
\*****************************************************************************/

#include <math.h>
#include <pthread.h>
#include <pwd.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <lua.h>
#include <lauxlib.h>

#include <slurm/slurm.h>

#include "asbb.h"

#define ASBB_MSG_LEN 1024
#define ASBB_PATH_LEN 4096

/* 2^63 and 2^32 as doubles (exact). */
#define TWO_POW_63 9223372036854775808.0
#define TWO_POW_32 4294967296.0

extern int luaopen_asbb(lua_State *L);

/* The config path of the last asbb.init, reused to re-initialise. */
static pthread_mutex_t path_lock = PTHREAD_MUTEX_INITIALIZER;
static char config_path[ASBB_PATH_LEN] = "";

static const char *_kind_str(int32_t kind)
{
	switch (kind) {
	case ASBB_KIND_FREE:
		return "free";
	case ASBB_KIND_HELD:
		return "held";
	case ASBB_KIND_REFUSED:
		return "refused";
	case ASBB_KIND_SHADOW:
		return "shadow";
	case ASBB_KIND_DB_ACCEPT:
		return "db_accept";
	default:
		return "none";
	}
}

/*
 * Push t[name] and leave it on the stack: the value (a string above all)
 * must stay referenced until the library call returns, and t may be a
 * proxy whose __index makes fresh strings.
 */
static int _field(lua_State *L, int t, const char *name)
{
	lua_getfield(L, t, name);
	return lua_gettop(L);
}

/* A string field, or NULL when absent or not a string. */
static const char *_str(lua_State *L, int t, const char *name)
{
	int i = _field(L, t, name);

	if (lua_type(L, i) != LUA_TSTRING)
		return NULL;
	return lua_tostring(L, i);
}

/*
 * A number field as an integer in [0, max], or -1 when it is absent, not
 * a number, negative, not integral or above max.
 */
static double _num(lua_State *L, int t, const char *name, double max)
{
	int i = _field(L, t, name);
	double d;

	if (lua_type(L, i) != LUA_TNUMBER)
		return -1;
	d = lua_tonumber(L, i);
	if (isnan(d) || (d < 0) || (d != floor(d)) || (d > max))
		return -1;
	return d;
}

static uint32_t _u32(lua_State *L, int t, const char *name, uint32_t unset)
{
	double d = _num(L, t, name, TWO_POW_32 - 1);

	return (d < 0) ? unset : (uint32_t) d;
}

static uint16_t _u16(lua_State *L, int t, const char *name)
{
	double d = _num(L, t, name, 65535);

	return (d < 0) ? NO_VAL16 : (uint16_t) d;
}

/* Anything >= 2^63 (NO_VAL64 itself rounds to 2^64) is NO_VAL64. */
static uint64_t _u64(lua_State *L, int t, const char *name)
{
	double d = _num(L, t, name, INFINITY);

	if ((d < 0) || (d >= TWO_POW_63))
		return NO_VAL64;
	return (uint64_t) d;
}

static int64_t _time(lua_State *L, int t, const char *name)
{
	double d = _num(L, t, name, INFINITY);

	if ((d < 0) || (d >= TWO_POW_63))
		return 0;
	return (int64_t) d;
}

/* min_mem_per_cpu / min_mem_per_node first, then pn_min_memory. */
static uint64_t _memory(lua_State *L, int t)
{
	uint64_t mb;

	if ((mb = _u64(L, t, "min_mem_per_cpu")) != NO_VAL64)
		return mb | MEM_PER_CPU;
	if ((mb = _u64(L, t, "min_mem_per_node")) != NO_VAL64)
		return mb;
	return _u64(L, t, "pn_min_memory");
}

static void _job_from_table(lua_State *L, int t, asbb_job_t *job)
{
	memset(job, 0, sizeof(*job));
	job->abi_version = ASBB_ABI_VERSION;
	job->cluster = _str(L, t, "cluster");
	job->account = _str(L, t, "account");
	job->partition = _str(L, t, "partition");
	job->user_name = _str(L, t, "user_name");
	job->user_id = _u32(L, t, "user_id", NO_VAL);
	job->time_limit = _u32(L, t, "time_limit", NO_VAL);
	job->min_nodes = _u32(L, t, "min_nodes", NO_VAL);
	job->max_nodes = _u32(L, t, "max_nodes", NO_VAL);
	job->num_tasks = _u32(L, t, "num_tasks", NO_VAL);
	job->cpus_per_task = _u16(L, t, "cpus_per_task");
	job->min_cpus = _u32(L, t, "min_cpus", NO_VAL);
	job->pn_min_memory = _memory(L, t);
	job->tres_per_node = _str(L, t, "tres_per_node");
	job->tres_per_job = _str(L, t, "tres_per_job");
	job->array_inx = _str(L, t, "array_inx");
	job->admin_comment = _str(L, t, "admin_comment");
	job->job_id_str = _str(L, t, "job_id_str");
}

/* The name of user uid, or NULL; it lives in buf. */
static const char *_user_name(uint32_t uid, struct passwd *pw, char *buf,
			      size_t buf_len)
{
	struct passwd *res = NULL;

	if ((uid == NO_VAL) ||
	    getpwuid_r((uid_t) uid, pw, buf, buf_len, &res) || !res)
		return NULL;
	return res->pw_name;
}

static void _end_from_table(lua_State *L, int t, asbb_job_end_t *end,
			    struct passwd *pw, char *pw_buf, size_t pw_len)
{
	memset(end, 0, sizeof(*end));
	end->abi_version = ASBB_ABI_VERSION;
	end->cluster = _str(L, t, "cluster");
	end->job_id = _u32(L, t, "job_id", 0);
	end->array_job_id = _u32(L, t, "array_job_id", 0);
	end->array_task_id = _u32(L, t, "array_task_id", NO_VAL);
	end->account = _str(L, t, "account");
	end->partition = _str(L, t, "partition");
	end->user_name = _str(L, t, "user_name");
	if (!end->user_name)
		end->user_name = _user_name(_u32(L, t, "user_id", NO_VAL),
					    pw, pw_buf, pw_len);
	end->admin_comment = _str(L, t, "admin_comment");
	end->start_time = _time(L, t, "start_time");
	end->end_time = _time(L, t, "end_time");
	end->job_state = _u32(L, t, "job_state", 0) & JOB_STATE_BASE;
	end->nodes = _u32(L, t, "nodes", 0);
	end->cpus = _u32(L, t, "cpus", 0);
	end->tres_alloc = _str(L, t, "tres_alloc");
}

/* asbb_init with the remembered path (NULL when none was given). */
static int _init_library(char *msg, size_t msg_len)
{
	char path[ASBB_PATH_LEN];

	pthread_mutex_lock(&path_lock);
	memcpy(path, config_path, sizeof(path));
	pthread_mutex_unlock(&path_lock);
	return asbb_init(path[0] ? path : NULL, msg, msg_len);
}

/* asbb.init([config_path]) -> ok, msg */
static int _l_init(lua_State *L)
{
	const char *path = luaL_optstring(L, 1, NULL);
	char msg[ASBB_MSG_LEN] = "";
	int rc;

	if (path && (strlen(path) >= ASBB_PATH_LEN))
		return luaL_argerror(L, 1, "path too long");
	if ((rc = asbb_abi_version()) != ASBB_ABI_VERSION) {
		snprintf(msg, sizeof(msg),
			 "asbb: libasbb.so has ABI %d, the Lua module needs %d",
			 rc, ASBB_ABI_VERSION);
		lua_pushboolean(L, 0);
		lua_pushstring(L, msg);
		return 2;
	}
	pthread_mutex_lock(&path_lock);
	snprintf(config_path, sizeof(config_path), "%s", path ? path : "");
	pthread_mutex_unlock(&path_lock);

	rc = _init_library(msg, sizeof(msg));
	lua_pushboolean(L, rc == ASBB_OK);
	lua_pushstring(L, msg);
	return 2;
}

/* asbb.admit(job) / asbb.modify(job) */
static int _decide(lua_State *L, int modify)
{
	char msg[ASBB_MSG_LEN] = "";
	asbb_decision_t out;
	asbb_job_t job;
	int rc, attempt;

	luaL_checktype(L, 1, LUA_TTABLE);
	luaL_checkstack(L, 32, "asbb: job fields");
	_job_from_table(L, 1, &job);

	for (attempt = 0; attempt < 2; attempt++) {
		memset(&out, 0, sizeof(out));
		out.abi_version = ASBB_ABI_VERSION;
		msg[0] = '\0';
		if (modify)
			rc = asbb_modify(&job, &out, msg, sizeof(msg));
		else
			rc = asbb_admit(&job, &out, msg, sizeof(msg));
		/* Closed by asbb_fini (e.g. a reconfigure): init again. */
		if ((rc != ASBB_ERR_NOT_INIT) ||
		    (_init_library(msg, sizeof(msg)) != ASBB_OK))
			break;
	}

	lua_pushinteger(L, rc);
	lua_pushstring(L, _kind_str(out.kind));
	lua_pushstring(L, msg);
	lua_pushstring(L, out.admin_comment);
	lua_pushstring(L, out.hold_id);
	lua_pushstring(L, out.amount);
	return 6;
}

static int _l_admit(lua_State *L)
{
	return _decide(L, 0);
}

static int _l_modify(lua_State *L)
{
	return _decide(L, 1);
}

/* asbb.settle(job_end) -> rc, msg */
static int _l_settle(lua_State *L)
{
	char msg[ASBB_MSG_LEN] = "";
	char pw_buf[4096];
	struct passwd pw;
	asbb_job_end_t end;
	int rc, attempt;

	luaL_checktype(L, 1, LUA_TTABLE);
	luaL_checkstack(L, 32, "asbb: job_end fields");
	_end_from_table(L, 1, &end, &pw, pw_buf, sizeof(pw_buf));

	for (attempt = 0; attempt < 2; attempt++) {
		msg[0] = '\0';
		rc = asbb_settle(&end, msg, sizeof(msg));
		if ((rc != ASBB_ERR_NOT_INIT) ||
		    (_init_library(msg, sizeof(msg)) != ASBB_OK))
			break;
	}

	lua_pushinteger(L, rc);
	lua_pushstring(L, msg);
	return 2;
}

static int _l_abi_version(lua_State *L)
{
	lua_pushinteger(L, asbb_abi_version());
	return 1;
}

static const struct luaL_Reg asbb_functions[] = {
	{ "init", _l_init },
	{ "admit", _l_admit },
	{ "modify", _l_modify },
	{ "settle", _l_settle },
	{ "abi_version", _l_abi_version },
	{ NULL, NULL }
};

static void _set_int(lua_State *L, const char *name, int value)
{
	lua_pushinteger(L, value);
	lua_setfield(L, -2, name);
}

extern int luaopen_asbb(lua_State *L)
{
	luaL_register(L, "asbb", asbb_functions);
	_set_int(L, "ABI_VERSION", ASBB_ABI_VERSION);
	_set_int(L, "OK", ASBB_OK);
	_set_int(L, "REFUSED", ASBB_REFUSED);
	_set_int(L, "ERR_INVALID", ASBB_ERR_INVALID);
	_set_int(L, "ERR_CONFIG", ASBB_ERR_CONFIG);
	_set_int(L, "ERR_UNAVAILABLE", ASBB_ERR_UNAVAILABLE);
	_set_int(L, "ERR_NOT_INIT", ASBB_ERR_NOT_INIT);
	_set_int(L, "ERR_ABI", ASBB_ERR_ABI);
	_set_int(L, "ERR_INTERNAL", ASBB_ERR_INTERNAL);
	_set_int(L, "ERR_NOT_FOUND", ASBB_ERR_NOT_FOUND);
	return 1;
}
