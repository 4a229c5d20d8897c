# Tests of lmshrink_compress that need more than one command.
#   cmake -DEXE=lmshrink_compress -DMODE=reproducible -DARGS="..." -DREFERENCE=dir -DOUT=dir -P check_compress.cmake
#     runs the job of ARGS on 1 thread and requires results.csv and the checkpoints to be
#     identical to REFERENCE's (the same job run on 2 threads by example_compress), a llama2.c
#     export of each truncated student, and a plot.
#   cmake -DEXE=... -DMODE=bad -DOUT=dir -DEXPECT=regex -DARGS="--opt value" -P check_compress.cmake
#     requires a non-zero exit, a message matching EXPECT, and no output folder.
#   -DLAUNCHER="mpiexec;-n;2;..." runs the job under that launcher (data parallel), and
#   -DTHREADS=N sets its --threads (default 1).
if(NOT THREADS)
  set(THREADS 1)
endif()
if(MODE STREQUAL "reproducible")
  separate_arguments(small UNIX_COMMAND "${ARGS}")
  file(REMOVE_RECURSE ${OUT}/b)
  execute_process(COMMAND ${LAUNCHER} ${EXE} ${small} --threads ${THREADS} --out ${OUT}/b
                  RESULT_VARIABLE rc_b OUTPUT_VARIABLE log_b ERROR_VARIABLE err_b)
  if(NOT rc_b EQUAL 0)
    message(FATAL_ERROR "lmshrink_compress failed: ${rc_b}\n${err_b}")
  endif()
  set(OUT_A ${REFERENCE})
  foreach(f results.csv results.md training.csv checkpoints/losparse_0.50.safetensors
            checkpoints/itp_0.30.safetensors checkpoints/trunc-kd.safetensors checkpoints/trunc-kd.bin
            checkpoints/trunc-lm.bin)
    execute_process(COMMAND ${CMAKE_COMMAND} -E compare_files ${OUT_A}/${f} ${OUT}/b/${f} RESULT_VARIABLE same)
    if(NOT same EQUAL 0)
      message(FATAL_ERROR "${f} differs between two runs of the same job (${LAUNCHER} --threads ${THREADS})")
    endif()
  endforeach()
  file(READ ${OUT_A}/results.csv csv)
  foreach(row "teacher,1,260032," "losparse,0.50," "lowrank,0.30," "itp,0.70," "trunc-kd,-,169152,0.6000," "trunc-lm,-,169152,")
    string(FIND "${csv}" "\n${row}" at)
    if(at EQUAL -1)
      message(FATAL_ERROR "results.csv has no row starting '${row}':\n${csv}")
    endif()
  endforeach()
  if(NOT EXISTS ${OUT_A}/perplexity_vs_parameters.svg)
    message(FATAL_ERROR "no plot written")
  endif()
  if(LAUNCHER AND NOT log_b MATCHES "2 processes x 1 threads, 2 shards per batch")
    message(FATAL_ERROR "the job did not run on 2 processes:\n${log_b}")
  endif()
  message(STATUS "reproducible: results.csv, training.csv and checkpoints identical (${LAUNCHER} --threads ${THREADS})")
elseif(MODE STREQUAL "bad")
  file(REMOVE_RECURSE ${OUT})
  separate_arguments(args UNIX_COMMAND "${ARGS}")
  if(NOT ARGS MATCHES "--out ")  # a case may name its own (unusable) output folder
    list(APPEND args --out ${OUT})
  endif()
  execute_process(COMMAND ${LAUNCHER} ${EXE} ${args} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(rc EQUAL 0)
    message(FATAL_ERROR "lmshrink_compress accepted bad input ${ARGS}")
  endif()
  if(NOT "${err}" MATCHES "${EXPECT}")
    message(FATAL_ERROR "expected an error matching '${EXPECT}', got:\n${err}")
  endif()
  if(EXISTS ${OUT})
    message(FATAL_ERROR "bad input ${ARGS} left an output folder ${OUT}")
  endif()
  message(STATUS "refused before any work: ${err}")
else()
  message(FATAL_ERROR "MODE must be reproducible or bad")
endif()
