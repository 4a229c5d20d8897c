# lmshrink_run score --compact on a student of example_compress gives the held-out NLL the job
# wrote for it in results.csv (3 windows of 512, as the job's test runs it):
#   cmake -DRUN=lmshrink_run -DOUT=compress_dir -DEVAL=stream.u16 -P check_run_score.cmake
file(STRINGS ${OUT}/results.csv rows REGEX "^losparse,0\\.5")
list(LENGTH rows n)
if(NOT n EQUAL 1)
  message(FATAL_ERROR "results.csv has ${n} rows for losparse 0.5; one was expected")
endif()
string(REPLACE "," ";" fields "${rows}")
list(GET fields 8 job_nll)  # method,ratio,parameters,linear_ratio,bytes,index_bytes,val_nll,val_nll_before,nll
execute_process(COMMAND ${RUN} ${OUT}/checkpoints/losparse_0.50.safetensors score ${EVAL} --windows 3 --compact
                OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "lmshrink_run failed (${rc}):\n${err}")
endif()
if(NOT out MATCHES "NLL ([0-9.]+), perplexity [0-9.]+, top-1 [0-9.]+ over 1536 tokens")
  message(FATAL_ERROR "no score in:\n${out}")
endif()
if(NOT CMAKE_MATCH_1 STREQUAL job_nll)
  message(FATAL_ERROR "lmshrink_run gives NLL ${CMAKE_MATCH_1}; the job wrote ${job_nll}")
endif()
message(STATUS "lmshrink_run and the job agree: NLL ${job_nll}")
