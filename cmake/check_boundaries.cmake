# The tiers' boundaries (docs/design.md), checked on the source tree:
#   cmake -DROOT=<source dir> -P cmake/check_boundaries.cmake
# 1. Every public header is reachable from lmshrink/lmshrink.hpp through #include, or on the
#    opt-in list below (headers with dependencies of their own, or a tier of their own).
# 2. Every header under lmshrink/detail/ refuses to be included from outside the library.
# 3. No program, benchmark or example (examples/, bench/) names lmshrink::detail (or
#    lmshrink::mpi::detail) or includes
#    lmshrink/detail/: what they need is public API.
# 4. No header selects code by the including file's compiler flags (_OPENMP, __AVX*, __FMA__,
#    __SSE*, LMSHRINK_WITH_*): two files built with different flags would then hold different
#    definitions of one inline function (an ODR violation the linker resolves silently). Such
#    choices are values (docs/compact.md); only the opt-in headers that need a feature check
#    for it, to refuse without it.
cmake_policy(VERSION 3.16)
set(opt_in
  lmshrink/xtensor.hpp            # needs xtensor
  lmshrink/mpi.hpp                # needs MPI (lmshrink::mpi)
  "lmshrink/models/.*"            # the model tier (lmshrink::models)
  lmshrink/openmp.hpp             # needs OpenMP (a ThreadTeam for CompactLinear)
  lmshrink/onednn.hpp             # needs oneDNN (an external GEMM for CompactLinear)
)
set(feature_guards lmshrink/openmp.hpp)  # may test a flag, to refuse without it
set(inc ${ROOT}/include)
set(problems "")

# 1. Reachability, following quoted includes relative to each header.
set(reached "")
set(queue lmshrink/lmshrink.hpp)
while(queue)
  list(POP_FRONT queue header)
  if(header IN_LIST reached)
    continue()
  endif()
  list(APPEND reached ${header})
  file(STRINGS ${inc}/${header} lines REGEX "^#include \"")
  get_filename_component(dir ${header} DIRECTORY)
  foreach(line IN LISTS lines)
    string(REGEX REPLACE "^#include \"([^\"]+)\".*" "\\1" rel "${line}")
    get_filename_component(target ${inc}/${dir}/${rel} ABSOLUTE)
    file(RELATIVE_PATH target ${inc} ${target})
    list(APPEND queue ${target})
  endforeach()
endwhile()
file(GLOB_RECURSE public RELATIVE ${inc} ${inc}/lmshrink/*.hpp)
list(FILTER public EXCLUDE REGEX "^lmshrink/detail/")
set(public_count 0)
set(reached_count 0)
foreach(header IN LISTS public)
  math(EXPR public_count "${public_count} + 1")
  if(header IN_LIST reached)
    math(EXPR reached_count "${reached_count} + 1")
    continue()
  endif()
  set(listed FALSE)
  foreach(pattern IN LISTS opt_in)
    if(header MATCHES "^${pattern}$")
      set(listed TRUE)
    endif()
  endforeach()
  if(NOT listed)
    string(APPEND problems "  ${header} is neither included by lmshrink.hpp nor on the opt-in list\n")
  endif()
endforeach()

# 2. Guards.
file(GLOB detail_headers ${inc}/lmshrink/detail/*.hpp)
foreach(header IN LISTS detail_headers)
  file(READ ${header} text LIMIT 400)
  if(NOT text MATCHES "#if !defined\\(LMSHRINK_INSIDE_LIBRARY\\)")
    string(APPEND problems "  ${header} has no internal-include guard\n")
  endif()
endforeach()

# 3. Programs use public API only.
file(GLOB_RECURSE sources ${ROOT}/examples/*.cpp ${ROOT}/examples/*.hpp ${ROOT}/bench/*.cpp ${ROOT}/bench/*.hpp)
set(source_count 0)
foreach(source IN LISTS sources)
  math(EXPR source_count "${source_count} + 1")
  file(STRINGS ${source} hits REGEX "lmshrink::(mpi::)?detail|lmshrink/detail/")
  if(hits)
    file(RELATIVE_PATH rel ${ROOT} ${source})
    list(GET hits 0 first)
    string(STRIP "${first}" first)
    string(APPEND problems "  ${rel} uses the library's internals: ${first}\n")
  endif()
endforeach()

# 4. No code selected by the including file's flags.
file(GLOB_RECURSE all_headers RELATIVE ${inc} ${inc}/lmshrink/*.hpp)
foreach(header IN LISTS all_headers)
  if(header IN_LIST feature_guards)
    continue()
  endif()
  file(STRINGS ${inc}/${header} hits REGEX "^[ \t]*#[ \t]*(if|ifdef|ifndef|elif).*(_OPENMP|__AVX|__FMA__|__SSE|LMSHRINK_WITH_)")
  if(hits)
    list(GET hits 0 first)
    string(STRIP "${first}" first)
    string(APPEND problems "  ${header} selects code by the including file's flags: ${first}\n")
  endif()
endforeach()

if(problems)
  message(FATAL_ERROR "the tiers' boundaries are crossed:\n${problems}")
endif()
list(LENGTH detail_headers detail_count)
message(STATUS "boundaries hold: ${public_count} public headers (${reached_count} reached from lmshrink.hpp), "
               "${detail_count} guarded detail headers, ${source_count} program sources on public API")
