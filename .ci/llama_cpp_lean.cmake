# Read by the llama-cpp-python build in .ci/run (CMAKE_PROJECT_llama.cpp_INCLUDE): its Python
# bindings load libllama and ggml only, but its CMakeLists forces llama.cpp's "common" library
# (argument parsing, chat parsers, downloads; a third of the compile) on. A plain variable set
# after llama.cpp's project() shadows that cache entry, so common is neither built nor installed.
set(LLAMA_BUILD_COMMON OFF)
