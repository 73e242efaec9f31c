# Runs tests/parallel/mpi_watchdog_probe.cpp under mpiexec and passes only when the collective watchdog ended the
# job the way it should after one rank stopped itself (SIGSTOP) before an all_reduce:
#   - the job ended by itself within MAX_SECONDS (not hung), with a non-zero exit status,
#   - a waiting rank's message names the collective ("all_reduce of 4096 f32"), the seconds it waited and the
#     stopped rank it was waiting for,
#   - and no rank got past the all_reduce.
# As with mpi_abort_check.cmake, CTest alone cannot judge exit status and output together, so this script is the
# test.
#
# cmake -DMPIEXEC=... -DNP=2 -DMPIEXEC_FLAGS="a;b" -DPROBE=... -DTIMEOUT=3 -DSTOPPED_RANK=1 -DMAX_SECONDS=20
#       -P mpi_watchdog_check.cmake
foreach(var MPIEXEC NP PROBE TIMEOUT STOPPED_RANK MAX_SECONDS)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "mpi_watchdog_check: -D${var}=... is required")
  endif()
endforeach()

string(TIMESTAMP started "%s")
execute_process(
  COMMAND ${MPIEXEC} -n ${NP} ${MPIEXEC_FLAGS} ${PROBE} ${TIMEOUT} ${STOPPED_RANK}
  RESULT_VARIABLE status
  OUTPUT_VARIABLE output
  ERROR_VARIABLE output
  TIMEOUT ${MAX_SECONDS})
string(TIMESTAMP ended "%s")
math(EXPR seconds "${ended} - ${started}")
message(STATUS "mpiexec exit status '${status}' after ${seconds} s; output:\n${output}")

if(NOT status MATCHES "^[0-9]+$")
  message(FATAL_ERROR "the job did not end by itself within ${MAX_SECONDS} s (${status}): the watchdog did not fire")
endif()
if(status EQUAL 0)
  message(FATAL_ERROR "the job exited 0, but rank ${STOPPED_RANK} was stopped before the all_reduce")
endif()
if(seconds LESS TIMEOUT)
  message(FATAL_ERROR "the job ended after ${seconds} s, before the ${TIMEOUT} s collective timeout")
endif()
set(report "mlarun: rank [0-9]+: collective watchdog: all_reduce of 4096 f32 \\(collective #[0-9]+ on mpi\\) has not completed after [0-9.]+ s \\(--collective-timeout ${TIMEOUT}\\); waiting for rank ${STOPPED_RANK} \\(no answer")
if(NOT output MATCHES "${report}")
  message(FATAL_ERROR "no watchdog message naming the all_reduce, the seconds and rank ${STOPPED_RANK}")
endif()
if(output MATCHES "passed the all_reduce")
  message(FATAL_ERROR "a rank got past the all_reduce that rank ${STOPPED_RANK} never entered")
endif()
if(NP GREATER 2 AND NOT output MATCHES "waiting in it too")
  message(FATAL_ERROR "with ${NP} ranks the report should say the other healthy ranks are waiting too")
endif()
message(STATUS "ok: the watchdog ended the job after ${seconds} s with exit status ${status}")
