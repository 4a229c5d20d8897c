# Runs a program and compares what it printed with a reference file, byte for byte but for
# trailing newlines (run.c ends its output with one):
#   cmake -DCOMMAND="prog;arg;..." -DREFERENCE=file.txt -P check_output.cmake
execute_process(COMMAND ${COMMAND} OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "the program failed (${rc}):\n${err}")
endif()
file(READ ${REFERENCE} want)
string(REGEX REPLACE "\n+$" "" out "${out}")
string(REGEX REPLACE "\n+$" "" want "${want}")
if(NOT out STREQUAL want)
  message(FATAL_ERROR "the output differs from ${REFERENCE}\n--- printed:\n${out}\n--- expected:\n${want}")
endif()
message(STATUS "the output equals ${REFERENCE}")
