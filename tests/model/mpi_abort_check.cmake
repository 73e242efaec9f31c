# Runs tests/mpi_abort_probe.cpp under mpiexec and passes only when the job failed the way it should:
#   - it ended by itself within MAX_SECONDS (the healthy ranks were taken down, not left in their barrier),
#   - with a non-zero exit status,
#   - the failing rank's message naming the missing shard appears exactly once,
#   - and no rank got past the barrier.
# CTest alone cannot say all of this: PASS_REGULAR_EXPRESSION ignores the exit status, and WILL_FAIL inverts
# whatever verdict the regular expressions give. So this script is the test, and CTest just runs it.
#
# cmake -DMPIEXEC=... -DNP=2 -DMPIEXEC_FLAGS="a;b" -DPROBE=... -DCHECKPOINT=... -DFAILING_RANK=1 -DSHARD=...
#       -DMAX_SECONDS=30 -P mpi_abort_check.cmake
foreach(var MPIEXEC NP PROBE CHECKPOINT FAILING_RANK SHARD MAX_SECONDS)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "mpi_abort_check: -D${var}=... is required")
  endif()
endforeach()

string(TIMESTAMP started "%s")
execute_process(
  COMMAND ${MPIEXEC} -n ${NP} ${MPIEXEC_FLAGS} ${PROBE} ${CHECKPOINT} ${FAILING_RANK} ${SHARD}
  RESULT_VARIABLE status
  OUTPUT_VARIABLE output
  ERROR_VARIABLE output
  TIMEOUT ${MAX_SECONDS})
string(TIMESTAMP ended "%s")
math(EXPR seconds "${ended} - ${started}")
message(STATUS "mpiexec exit status '${status}' after ${seconds} s; output:\n${output}")

if(NOT status MATCHES "^[0-9]+$")
  message(FATAL_ERROR "the job did not end by itself within ${MAX_SECONDS} s (${status}): "
                      "the failing rank did not take the others down")
endif()
if(status EQUAL 0)
  message(FATAL_ERROR "the job exited 0, but rank ${FAILING_RANK} could not load its shard")
endif()
string(REGEX MATCHALL "mlarun: rank ${FAILING_RANK}: cannot load the model: [^\n]*${SHARD}" reports "${output}")
list(LENGTH reports report_count)
if(NOT report_count EQUAL 1)
  message(FATAL_ERROR "expected the failing rank's message naming ${SHARD} exactly once, found it ${report_count} times")
endif()
string(REGEX MATCHALL "mlarun: rank [0-9]+:" any_reports "${output}")
list(LENGTH any_reports any_count)
if(NOT any_count EQUAL 1)
  message(FATAL_ERROR "expected one rank to report an error, found ${any_count} reports")
endif()
if(output MATCHES "passed the barrier")
  message(FATAL_ERROR "a rank got past the barrier that the failing rank never reached")
endif()
message(STATUS "ok: rank ${FAILING_RANK} failed, every rank ended within ${seconds} s with exit status ${status}")
