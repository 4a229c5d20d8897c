# lmshrink_add_instances(<name> [MODELS] [options for the instance files...])
#
# A static library holding lmshrink's float and double instances of its heavy templates
# (svd_init's SVDs, LowRankSparseLinear's products; with MODELS also the model tier's: the Llama
# trainer), each compiled once, in its own file, so that they build in parallel. Targets linking it get LMSHRINK_EXTERN_TEMPLATES, so none of their
# files compiles those instances again (docs/build.md). Give the library the same code-generation
# flags (e.g. -march) as the targets that link it: Eigen's memory alignment depends on them.
# The folder of the instance files is the global property LMSHRINK_INSTANCES_DIR, set by
# lmshrink's CMakeLists.txt (add_subdirectory) or by its installed package (find_package).
function(lmshrink_add_instances name)
  cmake_parse_arguments(PARSE_ARGV 1 arg "MODELS" "" "")
  get_property(dir GLOBAL PROPERTY LMSHRINK_INSTANCES_DIR)
  file(GLOB sources CONFIGURE_DEPENDS "${dir}/*.cpp")  # a new instance file joins without a reconfigure
  if(arg_MODELS)
    file(GLOB model_sources CONFIGURE_DEPENDS "${dir}/models/*.cpp")
    list(APPEND sources ${model_sources})
  endif()
  if(NOT sources)
    message(FATAL_ERROR "lmshrink_add_instances: no instance files in '${dir}'")
  endif()
  add_library(${name} STATIC ${sources})
  # BDCSVD, per scalar: 64-68 s at -O3 -march=native with gcc 12, 57 s at -O2 (one file alone
  # on an idle core). In a Release build at -O3 these two files are compiled at -O2, where gcc 12
  # with AVX-512 warns that Eigen's own ptranspose uses _mm512_undefined_ps uninitialized (a
  # false positive inside Eigen, 16 warnings per file): not for these two files.
  if(CMAKE_CXX_FLAGS_RELEASE MATCHES "-O3")
    set_source_files_properties(${dir}/svd_exact_float.cpp ${dir}/svd_exact_double.cpp PROPERTIES
      COMPILE_OPTIONS "$<$<AND:$<CONFIG:Release>,$<CXX_COMPILER_ID:GNU,Clang>>:-O2>;$<$<AND:$<CONFIG:Release>,$<CXX_COMPILER_ID:GNU>>:-Wno-uninitialized>")
  endif()
  target_link_libraries(${name} PUBLIC lmshrink::lmshrink ${arg_UNPARSED_ARGUMENTS})
  target_compile_definitions(${name} PUBLIC LMSHRINK_EXTERN_TEMPLATES)
endfunction()
