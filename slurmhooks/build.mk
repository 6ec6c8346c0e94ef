# slurmhooks/build.mk - build rules for what Slurm loads: the job_submit/asbb
# plugin and the Lua module "asbb". Included by slurmhooks/Makefile and, if
# it wants, by the top-level Makefile.
#
# Inputs (all overridable):
#   LIBDIR      directory holding libasbb.so at link time  (default: build)
#   ASBB_RPATH  directory of libasbb.so at run time        (default: LIBDIR)
#   HOOKS_OUT   where the .so files are written            (default: LIBDIR)
#   ASBB_INC    directory of asbb.h                        (default: cgo)
#   LUA_INC     Lua 5.1 headers            (default: /usr/include/lua5.1)
#
# Targets: hooks, hooks-check (exported symbols), hooks-install, hooks-clean.
# Needs libslurm-dev and liblua5.1-0-dev (tests/e2e/provision.sh).

HOOKS_DIR := $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))
HOOKS_ROOT := $(patsubst %/,%,$(dir $(abspath $(HOOKS_DIR))))

LIBDIR ?= $(HOOKS_ROOT)/build
ASBB_RPATH ?= $(abspath $(LIBDIR))
HOOKS_OUT ?= $(LIBDIR)
ASBB_INC ?= $(HOOKS_ROOT)/cgo
LUA_INC ?= /usr/include/lua5.1

# Install locations (hooks-install).
DESTDIR ?=
PLUGIN_INSTALL_DIR ?= /usr/local/lib/asbb/slurm
LUA_CMOD_DIR ?= /usr/local/lib/lua/5.1

CC ?= cc
HOOKS_OPT ?= -O2 -g
HOOKS_CFLAGS := $(HOOKS_OPT) -std=gnu11 -fPIC -fstack-protector-strong \
	-D_FORTIFY_SOURCE=2 -Wall -Wextra -Werror -I$(ASBB_INC)
HOOKS_LDFLAGS := -shared -Wl,-z,relro,-z,now -Wl,-z,noexecstack \
	-L$(LIBDIR) -Wl,-rpath,$(ASBB_RPATH)

JOB_SUBMIT_SO := $(HOOKS_OUT)/job_submit_asbb.so
LUA_MODULE_SO := $(HOOKS_OUT)/asbb.so

.PHONY: hooks hooks-check hooks-install hooks-clean

hooks: $(JOB_SUBMIT_SO) $(LUA_MODULE_SO) ## build the Slurm plugin and the Lua module

$(JOB_SUBMIT_SO): $(HOOKS_DIR)/job_submit_asbb.c \
		$(HOOKS_DIR)/job_submit_asbb.map $(ASBB_INC)/asbb.h \
		$(LIBDIR)/libasbb.so
	@mkdir -p $(@D)
	$(CC) $(HOOKS_CFLAGS) -o $@ $< $(HOOKS_LDFLAGS) \
		-Wl,--version-script=$(HOOKS_DIR)/job_submit_asbb.map -lasbb

# Not linked with liblua: slurmctld dlopens liblua5.1 with RTLD_GLOBAL.
$(LUA_MODULE_SO): $(HOOKS_DIR)/lua/asbb_lua.c $(HOOKS_DIR)/lua/asbb_lua.map \
		$(ASBB_INC)/asbb.h $(LIBDIR)/libasbb.so
	@mkdir -p $(@D)
	$(CC) $(HOOKS_CFLAGS) -I$(LUA_INC) -o $@ $< $(HOOKS_LDFLAGS) \
		-Wl,--version-script=$(HOOKS_DIR)/lua/asbb_lua.map -lasbb -lm

# Fails if a .so exports anything but its documented symbols.
hooks-check: hooks ## check the symbols the plugin and the module export
	@got=$$(nm -D --defined-only $(JOB_SUBMIT_SO) | awk '{print $$3}' | \
		sort | tr '\n' ' '); \
	want="fini init job_modify job_submit plugin_name plugin_type plugin_version "; \
	[ "$$got" = "$$want" ] || { echo "job_submit_asbb.so exports: $$got"; exit 1; }
	@got=$$(nm -D --defined-only $(LUA_MODULE_SO) | awk '{print $$3}' | \
		tr '\n' ' '); \
	[ "$$got" = "luaopen_asbb " ] || { echo "asbb.so exports: $$got"; exit 1; }
	@echo "hooks-check: exports ok"

# The plugin's rpath must point at libasbb.so's installed directory: build
# with ASBB_RPATH set accordingly. Installs by rename, never over a mapped .so.
hooks-install: hooks ## install the plugin and the Lua module
	install -d $(DESTDIR)$(PLUGIN_INSTALL_DIR) $(DESTDIR)$(LUA_CMOD_DIR)
	install -m 0755 $(JOB_SUBMIT_SO) $(DESTDIR)$(PLUGIN_INSTALL_DIR)/.job_submit_asbb.so.new
	mv -f $(DESTDIR)$(PLUGIN_INSTALL_DIR)/.job_submit_asbb.so.new \
		$(DESTDIR)$(PLUGIN_INSTALL_DIR)/job_submit_asbb.so
	install -m 0755 $(LUA_MODULE_SO) $(DESTDIR)$(LUA_CMOD_DIR)/.asbb.so.new
	mv -f $(DESTDIR)$(LUA_CMOD_DIR)/.asbb.so.new $(DESTDIR)$(LUA_CMOD_DIR)/asbb.so

hooks-clean:
	rm -f $(JOB_SUBMIT_SO) $(LUA_MODULE_SO)
