# How each of lmshrink's own programs (tests, examples, fuzz targets) is compiled, named once
# (docs/build.md); never applied to a user's targets.
#
#   lmshrink_build_profile(<target> <profile>)
#     optimised    the preset's flags: numerics, timings, anything slow unoptimised (the default)
#     unoptimised  -O0: checks that do not depend on optimisation and run in well under a
#                  second either way; 30-60 % less compile time
#     sanitized    ASan + UBSan at -O0 -g1 (parsers, the fuzz replay), when the compiler and its
#                  runtime have them (LMSHRINK_SANITIZE_REPLAY), else unoptimised
option(LMSHRINK_SANITIZE_REPLAY "Build the parser tests and the fuzz replay with ASan + UBSan" ON)

add_library(lmshrink_profile_sanitized INTERFACE)
set(LMSHRINK_HAS_ASAN_UBSAN OFF)
if(LMSHRINK_SANITIZE_REPLAY AND CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
  include(CheckCXXSourceCompiles)
  set(CMAKE_REQUIRED_FLAGS "-fsanitize=address,undefined")
  set(CMAKE_REQUIRED_LINK_OPTIONS "-fsanitize=address,undefined")
  check_cxx_source_compiles("int main() { return 0; }" LMSHRINK_ASAN_UBSAN_LINKS)
  unset(CMAKE_REQUIRED_FLAGS)
  unset(CMAKE_REQUIRED_LINK_OPTIONS)
  if(LMSHRINK_ASAN_UBSAN_LINKS)
    set(LMSHRINK_HAS_ASAN_UBSAN ON)
    set(sanitize -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer)
    # -O0 -g1: 2.6x faster to compile than -O1 -g, and traces keep their lines.
    target_compile_options(lmshrink_profile_sanitized INTERFACE ${sanitize} -O0 -g1)
    target_link_options(lmshrink_profile_sanitized INTERFACE ${sanitize})
  else()
    message(WARNING "ASan/UBSan not available: the parser tests and fuzz replay run unsanitized")
  endif()
endif()
if(NOT LMSHRINK_HAS_ASAN_UBSAN)
  target_compile_options(lmshrink_profile_sanitized INTERFACE $<$<CXX_COMPILER_ID:GNU,Clang>:-O0>)
endif()

function(lmshrink_build_profile target profile)
  if(profile STREQUAL "unoptimised")
    target_compile_options(${target} PRIVATE $<$<CXX_COMPILER_ID:GNU,Clang>:-O0>)
  elseif(profile STREQUAL "sanitized")
    target_link_libraries(${target} PRIVATE lmshrink_profile_sanitized)
  elseif(NOT profile STREQUAL "optimised")
    message(FATAL_ERROR "lmshrink_build_profile: '${profile}' for ${target}; expected optimised, "
                        "unoptimised or sanitized")
  endif()
endfunction()
