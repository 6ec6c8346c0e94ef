// Command libasbb is the budget core as a C shared library (libasbb.so),
// loaded into slurmctld by the job_submit/asbb plugin and the Lua module.
// Its contract is cgo/asbb.h; build it with
//
//	go build -buildmode=c-shared -ldflags '-extldflags -Wl,-soname,libasbb.so' -o build/libasbb.so ./cgo
//
// This file only converts between C and Go and calls lib.go; everything
// that can be tested without cgo lives in lib.go and convert.go.
package main

/*
#include <stddef.h>
#include <stdint.h>
// asbb.h declares the exports with const parameters, which cgo cannot
// express; rename its prototypes so that only the types are taken from it
// and the definitions cgo generates do not clash with them.
#define asbb_init asbb_init_proto
#define asbb_fini asbb_fini_proto
#define asbb_abi_version asbb_abi_version_proto
#define asbb_admit asbb_admit_proto
#define asbb_modify asbb_modify_proto
#define asbb_settle asbb_settle_proto
#include "asbb.h"
#undef asbb_init
#undef asbb_fini
#undef asbb_abi_version
#undef asbb_admit
#undef asbb_modify
#undef asbb_settle
*/
import "C"

import (
	"unsafe"

	"github.com/asbb/asbb/budget"
)

// The Go mirrors of the header's constants must agree with it: a
// negative array length fails the build if one differs.
var (
	_ [C.ASBB_ABI_VERSION - abiVersion]struct{}
	_ [abiVersion - C.ASBB_ABI_VERSION]struct{}
	_ [C.ASBB_OK - rcOK]struct{}
	_ [rcOK - C.ASBB_OK]struct{}
	_ [C.ASBB_REFUSED - rcRefused]struct{}
	_ [rcRefused - C.ASBB_REFUSED]struct{}
	_ [C.ASBB_ERR_INVALID - rcInvalid]struct{}
	_ [rcInvalid - C.ASBB_ERR_INVALID]struct{}
	_ [C.ASBB_ERR_CONFIG - rcConfig]struct{}
	_ [rcConfig - C.ASBB_ERR_CONFIG]struct{}
	_ [C.ASBB_ERR_UNAVAILABLE - rcUnavailable]struct{}
	_ [rcUnavailable - C.ASBB_ERR_UNAVAILABLE]struct{}
	_ [C.ASBB_ERR_NOT_INIT - rcNotInit]struct{}
	_ [rcNotInit - C.ASBB_ERR_NOT_INIT]struct{}
	_ [C.ASBB_ERR_ABI - rcABI]struct{}
	_ [rcABI - C.ASBB_ERR_ABI]struct{}
	_ [C.ASBB_ERR_INTERNAL - rcInternal]struct{}
	_ [rcInternal - C.ASBB_ERR_INTERNAL]struct{}
	_ [C.ASBB_ERR_NOT_FOUND - rcNotFound]struct{}
	_ [rcNotFound - C.ASBB_ERR_NOT_FOUND]struct{}
	_ [C.ASBB_KIND_NONE - kindNone]struct{}
	_ [kindNone - C.ASBB_KIND_NONE]struct{}
	_ [C.ASBB_KIND_FREE - kindFree]struct{}
	_ [kindFree - C.ASBB_KIND_FREE]struct{}
	_ [C.ASBB_KIND_HELD - kindHeld]struct{}
	_ [kindHeld - C.ASBB_KIND_HELD]struct{}
	_ [C.ASBB_KIND_REFUSED - kindRefused]struct{}
	_ [kindRefused - C.ASBB_KIND_REFUSED]struct{}
	_ [C.ASBB_KIND_SHADOW - kindShadow]struct{}
	_ [kindShadow - C.ASBB_KIND_SHADOW]struct{}
	_ [C.ASBB_KIND_DB_ACCEPT - kindDBAccept]struct{}
	_ [kindDBAccept - C.ASBB_KIND_DB_ACCEPT]struct{}
)

// cbuf views a caller's buffer (nil for NULL or length 0). The view is
// used only during the call.
func cbuf(p *C.char, n C.size_t) []byte {
	if p == nil || n == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(p)), int(n))
}

func carray(p *C.char, n int) []byte { return unsafe.Slice((*byte)(unsafe.Pointer(p)), n) }

//export asbb_init
func asbb_init(configPath *C.char, msg *C.char, msgLen C.size_t) (rc C.int) {
	buf := cbuf(msg, msgLen)
	defer func() {
		if r := recover(); r != nil {
			res := recovered(r, "asbb_init")
			writeMsg(buf, res.msg)
			rc = C.int(res.rc)
		}
	}()
	code, text := initLibrary(C.GoString(configPath))
	writeMsg(buf, text)
	return C.int(code)
}

//export asbb_fini
func asbb_fini() {
	defer func() {
		if r := recover(); r != nil {
			recovered(r, "asbb_fini")
		}
	}()
	finiLibrary()
}

//export asbb_abi_version
func asbb_abi_version() C.int { return C.ASBB_ABI_VERSION }

// jobFromC copies a job_desc mirror into Go values.
func jobFromC(j *C.asbb_job_t) budget.JobRequest {
	return budget.JobRequest{
		Cluster: C.GoString(j.cluster), Account: C.GoString(j.account), Partition: C.GoString(j.partition),
		User: C.GoString(j.user_name), UserID: uint32(j.user_id), TimeLimit: uint32(j.time_limit),
		MinNodes: uint32(j.min_nodes), MaxNodes: uint32(j.max_nodes), NumTasks: uint32(j.num_tasks),
		CPUsPerTask: uint16(j.cpus_per_task), MinCPUs: uint32(j.min_cpus), PnMinMemory: uint64(j.pn_min_memory),
		TresPerNode: C.GoString(j.tres_per_node), TresPerJob: C.GoString(j.tres_per_job),
		ArrayInx: C.GoString(j.array_inx), AdminComment: C.GoString(j.admin_comment), JobID: C.GoString(j.job_id_str),
	}
}

func decide(export string, job *C.asbb_job_t, out *C.asbb_decision_t, msg *C.char, msgLen C.size_t, modify bool) (rc C.int) {
	buf := cbuf(msg, msgLen)
	defer func() {
		if r := recover(); r != nil {
			res := recovered(r, export)
			writeMsg(buf, res.msg)
			rc = C.int(res.rc)
		}
	}()
	if job == nil || out == nil {
		writeMsg(buf, "asbb: "+export+": NULL job or decision")
		return C.ASBB_ERR_INVALID
	}
	if out.abi_version != C.ASBB_ABI_VERSION || job.abi_version != C.ASBB_ABI_VERSION {
		writeMsg(buf, "asbb: ABI mismatch: the caller was built for another asbb.h than libasbb.so (ABI 1)")
		return C.ASBB_ERR_ABI
	}
	out.kind = C.ASBB_KIND_NONE
	out.hold_id[0], out.amount[0], out.admin_comment[0] = 0, 0, 0
	res := admitJob(jobFromC(job), modify)
	if res.has {
		f, trimmed := decisionFields(res.decision, len(out.admin_comment))
		if trimmed {
			lib.logger().Warn("admin_comment too long for the ABI; keeping the marker only", "hold_id", f.holdID)
		}
		out.kind = C.int32_t(f.kind)
		writeMsg(carray(&out.hold_id[0], len(out.hold_id)), f.holdID)
		writeMsg(carray(&out.amount[0], len(out.amount)), f.amount)
		writeMsg(carray(&out.admin_comment[0], len(out.admin_comment)), f.adminComment)
	}
	writeMsg(buf, res.msg)
	return C.int(res.rc)
}

//export asbb_admit
func asbb_admit(job *C.asbb_job_t, out *C.asbb_decision_t, msg *C.char, msgLen C.size_t) C.int {
	return decide("asbb_admit", job, out, msg, msgLen, false)
}

//export asbb_modify
func asbb_modify(job *C.asbb_job_t, out *C.asbb_decision_t, msg *C.char, msgLen C.size_t) C.int {
	return decide("asbb_modify", job, out, msg, msgLen, true)
}

//export asbb_settle
func asbb_settle(end *C.asbb_job_end_t, msg *C.char, msgLen C.size_t) (rc C.int) {
	buf := cbuf(msg, msgLen)
	defer func() {
		if r := recover(); r != nil {
			res := recovered(r, "asbb_settle")
			writeMsg(buf, res.msg)
			rc = C.int(res.rc)
		}
	}()
	if end == nil {
		writeMsg(buf, "asbb: asbb_settle: NULL job end")
		return C.ASBB_ERR_INVALID
	}
	if end.abi_version != C.ASBB_ABI_VERSION {
		writeMsg(buf, "asbb: ABI mismatch: the caller was built for another asbb.h than libasbb.so (ABI 1)")
		return C.ASBB_ERR_ABI
	}
	e := budget.JobEnd{
		Cluster: C.GoString(end.cluster), JobID: uint32(end.job_id), ArrayJobID: uint32(end.array_job_id),
		ArrayTaskID: uint32(end.array_task_id), Account: C.GoString(end.account), Partition: C.GoString(end.partition),
		User: C.GoString(end.user_name), AdminComment: C.GoString(end.admin_comment), StartTime: int64(end.start_time),
		EndTime: int64(end.end_time), State: uint32(end.job_state), Nodes: uint32(end.nodes), CPUs: uint32(end.cpus),
		TresAlloc: C.GoString(end.tres_alloc),
	}
	res := settleJob(e)
	writeMsg(buf, res.msg)
	return C.int(res.rc)
}

func main() {}
