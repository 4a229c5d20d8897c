# lmshrink_run score --compact on a student of a main-job run gives the held-out NLL the job
# wrote for it in results.csv:
#   cmake -DRUN=lmshrink_run -DOUT=job_dir -DEVAL=stream_or_text -DROW="losparse,0.50"
#         -DCHECKPOINT=losparse_0.50 "-DARGS=--windows;3" -P check_run_score.cmake
file(STRINGS ${OUT}/results.csv rows)
set(found "")
foreach(row IN LISTS rows)
  string(FIND "${row}" "${ROW}," at)
  if(at EQUAL 0)
    set(found "${row}")
  endif()
endforeach()
if(found STREQUAL "")
  message(FATAL_ERROR "results.csv has no row starting with '${ROW},'")
endif()
string(REPLACE "," ";" fields "${found}")
list(GET fields 8 job_nll)  # method,ratio,parameters,linear_ratio,bytes,index_bytes,val_nll,val_nll_before,nll
execute_process(COMMAND ${RUN} ${OUT}/checkpoints/${CHECKPOINT}.safetensors score ${EVAL} --compact ${ARGS}
                OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "lmshrink_run failed (${rc}):\n${err}")
endif()
if(NOT out MATCHES "NLL ([0-9.]+), perplexity [0-9.]+, top-1 [0-9.]+ over [0-9]+ tokens")
  message(FATAL_ERROR "no score in:\n${out}\n${err}")
endif()
if(NOT CMAKE_MATCH_1 STREQUAL job_nll)
  message(FATAL_ERROR "lmshrink_run gives NLL ${CMAKE_MATCH_1}; the job wrote ${job_nll}\n${err}")
endif()
message(STATUS "lmshrink_run and the job agree: NLL ${job_nll}")
