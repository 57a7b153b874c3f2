# quantkit — the optional CUDA backend. include()d by the top-level CMakeLists.txt after the `quantkit` addon
# target exists. Builds cuda/*.cu into the static library `qk_cuda`, links it into `quantkit` together with the
# static CUDA runtime (so the addon loads on machines without an NVIDIA driver), and defines QK_WITH_CUDA=1 on
# `quantkit`. Nothing else in the build depends on CUDA.
#
#   -DQK_CUDA=auto   (default) build the backend when CMake finds nvcc (CheckLanguage), else skip it
#   -DQK_CUDA=on     require it: no nvcc is a configure error
#   -DQK_CUDA=off    never build it
#   -DQK_CUDA_ARCHITECTURES="89-real"   a developer shortcut (or "native"); the default list is below
#   -DCMAKE_CUDA_COMPILER=/path/to/nvcc (or env CUDACXX) picks a toolkit explicitly
#
# Per object, the ptxas resource report (-Xptxas -v: registers, shared memory, spills for every kernel and
# arch) is written to <build>/cuda-ptxas/<object>.ptxas.log; a spill is reported as a warning on stderr.

set(QK_CUDA "auto" CACHE STRING "Build the CUDA backend: auto (when nvcc is found), on, off")
set_property(CACHE QK_CUDA PROPERTY STRINGS auto on off)
string(TOLOWER "${QK_CUDA}" _qk_cuda_mode)
if(NOT _qk_cuda_mode MATCHES "^(auto|on|off)$")
  message(FATAL_ERROR "QK_CUDA must be auto, on or off (got '${QK_CUDA}')")
endif()

if(NOT TARGET quantkit)
  message(FATAL_ERROR "cuda/cuda.cmake must be included after the quantkit target is defined")
endif()

set(QK_WITH_CUDA OFF)
if(_qk_cuda_mode STREQUAL "off")
  message(STATUS "quantkit CUDA backend: off (QK_CUDA=off)")
else()
  # CheckLanguage looks at CMAKE_CUDA_COMPILER, $CUDACXX and PATH. Toolkits are often installed without being
  # on PATH, so also try the usual places before giving up.
  if(NOT CMAKE_CUDA_COMPILER AND NOT DEFINED ENV{CUDACXX})
    find_program(_qk_nvcc nvcc
                 HINTS ENV CUDA_PATH ENV CUDA_HOME ENV CUDA_ROOT /usr/local/cuda /opt/cuda
                 PATH_SUFFIXES bin)
    if(_qk_nvcc)
      set(CMAKE_CUDA_COMPILER "${_qk_nvcc}" CACHE FILEPATH "CUDA compiler")
    endif()
  endif()
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    set(QK_WITH_CUDA ON)
  elseif(_qk_cuda_mode STREQUAL "on")
    message(FATAL_ERROR
      "QK_CUDA=on but no working CUDA compiler (nvcc) was found. Install the CUDA toolkit (12.x or 13.x), put "
      "nvcc on PATH or pass -DCMAKE_CUDA_COMPILER=/path/to/nvcc (or set CUDACXX), or configure with "
      "-DQK_CUDA=auto / off to build without the CUDA backend.")
  else()
    message(STATUS "quantkit CUDA backend: off (QK_CUDA=auto and no nvcc found)")
  endif()
endif()

if(QK_WITH_CUDA)
  enable_language(CUDA)

  # The GPU code in the addon. "-real" = SASS (machine code, no JIT at first use), "-virtual" = PTX the driver
  # JIT-compiles for GPUs newer than every SASS entry. CUDA 13 cannot target anything below 7.5.
  set(_qk_cuda_default_archs
      75-real     # Turing (T4, RTX 20xx): the oldest architecture CUDA 13 supports; common in cloud inference
      80-real     # Ampere datacenter (A100, A30); also runs on 8.7 (Jetson Orin)
      86-real     # Ampere consumer/workstation (RTX 30xx, A10, A40): 8.6 has its own SASS tuning
      89-real     # Ada (RTX 40xx, L4, L40S)
      90-real     # Hopper (H100, H200)
      90-virtual  # PTX for everything newer (Blackwell 10.x/12.x, ...), JIT-compiled once by the driver
  )
  set(QK_CUDA_ARCHITECTURES "" CACHE STRING
      "CUDA_ARCHITECTURES of the qk_cuda library (CMake syntax, e.g. 89-real or native); empty = the default list")
  # scripts/build-native.js always passes -DQK_CUDA_ARCHITECTURES (empty unless $QK_CUDA_ARCHITECTURES is set),
  # so a developer's shortcut never outlives the command that asked for it.
  if(QK_CUDA_ARCHITECTURES STREQUAL "")
    set(_qk_archs ${_qk_cuda_default_archs})
  else()
    set(_qk_archs ${QK_CUDA_ARCHITECTURES})
  endif()

  set(_qk_cuda_dir "${CMAKE_CURRENT_LIST_DIR}")
  if(DEFINED QK_SRC_CUDA AND QK_SRC_CUDA)
    set(_qk_cuda_sources "")
    foreach(src IN LISTS QK_SRC_CUDA)  # scripts/sources.json paths are relative to the project root
      if(IS_ABSOLUTE "${src}")
        list(APPEND _qk_cuda_sources "${src}")
      else()
        list(APPEND _qk_cuda_sources "${_qk_cuda_dir}/../${src}")
      endif()
    endforeach()
  else()
    file(GLOB _qk_cuda_sources CONFIGURE_DEPENDS "${_qk_cuda_dir}/*.cu")
  endif()

  add_library(qk_cuda STATIC ${_qk_cuda_sources})
  set_target_properties(qk_cuda PROPERTIES
    POSITION_INDEPENDENT_CODE ON        # linked into a shared library (the .node addon)
    CUDA_STANDARD 17
    CUDA_STANDARD_REQUIRED ON
    CUDA_EXTENSIONS OFF
    CUDA_RUNTIME_LIBRARY Static         # libcudart_static: no libcudart.so needed at load time
    CUDA_SEPARABLE_COMPILATION OFF      # whole-program device code per .cu: no device-link step
    CUDA_VISIBILITY_PRESET hidden
    CUDA_ARCHITECTURES "${_qk_archs}")
  # qk_cuda.h and qk/status.h for the library and for whoever links it.
  target_include_directories(qk_cuda PUBLIC "${_qk_cuda_dir}" "${_qk_cuda_dir}/../csrc/include")
  string(REPLACE ";" " " _qk_arch_text "${_qk_archs}")
  target_compile_definitions(qk_cuda PRIVATE "QK_CUDA_ARCH_LIST=\"${_qk_arch_text}\"")
  # IEEE float32 exactly as on the CPU, whatever CMAKE_CUDA_FLAGS says (these come later on the command line):
  # --fmad=false mirrors -ffp-contract=off, correctly rounded division, no flush of denormals to zero. The
  # shared element math (qk/quant_math.h) relies on this to be bit-exact with the CPU kernels.
  # -Xptxas=-v prints registers / shared memory / spills per kernel and arch.
  target_compile_options(qk_cuda PRIVATE
    $<$<COMPILE_LANGUAGE:CUDA>:--fmad=false --prec-div=true --prec-sqrt=true --ftz=false -Xptxas=-v
                               -Xcompiler=-fno-math-errno>)

  # Capture the ptxas report: a tiny launcher runs each nvcc command with stderr going to a per-object log, then
  # passes through everything except the ptxas info lines and warns about spills. Makefile/Ninja generators on
  # Unix only; elsewhere the report simply stays in the build output.
  if(CMAKE_HOST_UNIX AND CMAKE_GENERATOR MATCHES "Makefiles|Ninja")
    set(_qk_ptxas_dir "${CMAKE_BINARY_DIR}/cuda-ptxas")
    file(MAKE_DIRECTORY "${_qk_ptxas_dir}")
    file(WRITE "${CMAKE_BINARY_DIR}/qk_cuda_ptxas_log.sh" [=[
# Generated by cuda/cuda.cmake: run an nvcc command, keep its ptxas -v report in $1/<object>.ptxas.log.
logdir=$1
shift
obj=unknown
prev=
for a in "$@"; do
  if [ "$prev" = "-o" ]; then obj=$a; fi
  prev=$a
done
log="$logdir/$(basename "$obj").ptxas.log"
"$@" 2>"$log"
rc=$?
grep -v -e '^ptxas info' -e '^    [0-9]* bytes stack frame' "$log" >&2
if grep -q -E '[1-9][0-9]* bytes spill (stores|loads)' "$log"; then
  echo "qk_cuda: WARNING: register spills in $(basename "$obj"), see $log" >&2
fi
exit $rc
]=])
    set_target_properties(qk_cuda PROPERTIES
      CUDA_COMPILER_LAUNCHER "sh;${CMAKE_BINARY_DIR}/qk_cuda_ptxas_log.sh;${_qk_ptxas_dir}")
  endif()

  # Linking the static qk_cuda makes CMake add the CUDA runtime it was built against to the addon's link line:
  # with CUDA_RUNTIME_LIBRARY Static on the addon as well, that is libcudart_static plus its system libraries
  # (-lrt -lpthread -ldl), and no libcudart.so dependency.
  target_link_libraries(quantkit PRIVATE qk_cuda)
  set_target_properties(quantkit PROPERTIES CUDA_RUNTIME_LIBRARY Static)
  target_compile_definitions(quantkit PRIVATE QK_WITH_CUDA=1)
  if(CMAKE_SYSTEM_NAME STREQUAL "Linux")
    # Keep the static runtime's (and qk_cuda's) symbols out of the addon's dynamic symbol table, so that a
    # libcudart.so loaded by another module can neither interpose on ours nor be interposed by it.
    target_link_options(quantkit PRIVATE "LINKER:--exclude-libs,libcudart_static.a:libqk_cuda.a")
  endif()
  message(STATUS "quantkit CUDA backend: on (nvcc ${CMAKE_CUDA_COMPILER_VERSION}, archs ${_qk_arch_text})")
endif()
