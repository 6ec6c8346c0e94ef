--[[
jobcomp.lua - ASBB end-of-job settlement for Slurm's jobcomp/lua plugin.

slurmctld calls slurm_jobcomp_log_record(job) for every job that finishes,
including jobs cancelled while pending (start_time == end_time then) and
every task of a job array. This script hands the record to asbb.settle,
which charges the actual cost and releases the job's share of its hold.

It never fails: every error is caught and logged with slurm.log_error, and
the function always returns slurm.SUCCESS. (A settlement the library cannot
make now is the recovery sweeper's job.)

Install next to slurm.conf as jobcomp.lua, with asbb.so on Lua's
package.cpath, and set JobCompType=jobcomp/lua (a slurmctld restart is
needed for JobCompType to take effect). Lua 5.1 (Debian's Slurm 22.05).
--]]

-- Site settings.
local ASBB = {
	-- Config file of libasbb.so; nil = $ASBB_CONFIG or /etc/asbb/asbb.toml.
	config = nil,
	-- Extra package.cpath entries for asbb.so, e.g. "/opt/asbb/lib/?.so".
	cpath = nil,
}

if ASBB.cpath then
	package.cpath = ASBB.cpath .. ";" .. package.cpath
end

local loaded, asbb = pcall(require, "asbb")
if loaded then
	local ok, msg = pcall(asbb.init, ASBB.config)
	if not ok then
		slurm.log_error("asbb: jobcomp init: %s", tostring(msg))
	end
else
	slurm.log_error("asbb: jobcomp cannot load the Lua module: %s",
		tostring(asbb))
	asbb = nil
end

-- The settlement record, with asbb_job_end_t field names. Every read of
-- the job record goes through Slurm's __index, so it happens inside the
-- caller's pcall.
local function end_record(job)
	local state = job.job_state
	if type(state) == "number" then
		-- Drop the flag bits (e.g. 32773 = FAILED|COMPLETING).
		state = state % 256
	end
	-- start_time goes as Slurm has it, even for a job cancelled while
	-- pending (start_time == end_time): it is part of the settlement's
	-- identity, and the epilog and recovery read the same value from
	-- scontrol/squeue. The library charges nothing for a run of no time.
	local start = job.start_time
	return {
		job_id = job.job_id,
		array_job_id = job.array_job_id,
		array_task_id = job.array_task_id,
		account = job.account,
		partition = job.partition,
		-- job_record's user_name is nil in 22.05 without accounting:
		-- the module resolves user_id then.
		user_name = job.user_name,
		user_id = job.user_id,
		admin_comment = job.admin_comment,
		start_time = start,
		end_time = job.end_time,
		job_state = state,
		nodes = job.total_nodes,
		cpus = job.total_cpus,
		-- "cpu=2,mem=3G,node=1,billing=2,gres/gpu=2"; tres_alloc_str
		-- is the same by TRES id ("1=2,2=3072,4=1,5=2,1001=2").
		tres_alloc = job.tres_fmt_alloc_str,
	}
end

local function settle(job)
	local rec = end_record(job)
	local rc, msg = asbb.settle(rec)
	if rc ~= asbb.OK then
		slurm.log_error("asbb: settle job %s (array %s_%s) failed " ..
			"rc=%d: %s", tostring(rec.job_id),
			tostring(rec.array_job_id), tostring(rec.array_task_id),
			rc, tostring(msg))
	end
end

function slurm_jobcomp_log_record(job)
	if asbb == nil then
		slurm.log_error("asbb: jobcomp: module not loaded, job %s not " ..
			"settled", tostring(job.job_id))
		return slurm.SUCCESS
	end
	local ok, err = pcall(settle, job)
	if not ok then
		slurm.log_error("asbb: jobcomp: %s", tostring(err))
	end
	return slurm.SUCCESS
end

return slurm.SUCCESS
