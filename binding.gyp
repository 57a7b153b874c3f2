# Fallback build with node-gyp (CPU only). Sources and per-ISA flags come from scripts/sources.json, the same
# list CMakeLists.txt reads, so the two builds cannot drift apart.
{
  "targets": [
    {
      "target_name": "qk_avx2",
      "type": "static_library",
      "sources": ["<!@(node scripts/sources.js avx2)"],
      "include_dirs": ["csrc/include"],
      "cflags": ["-fPIC", "<!@(node scripts/sources.js --flags avx2)"],
      "cflags_cc": ["-std=c++17"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++17", "-std=gnu++20"]
    },
    {
      "target_name": "qk_avx512",
      "type": "static_library",
      "sources": ["<!@(node scripts/sources.js avx512)"],
      "include_dirs": ["csrc/include"],
      "cflags": ["-fPIC", "<!@(node scripts/sources.js --flags avx512)"],
      "cflags_cc": ["-std=c++17"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++17", "-std=gnu++20"]
    },
    {
      "target_name": "quantkit",
      "dependencies": ["qk_avx2", "qk_avx512"],
      "sources": [
        "<!@(node scripts/sources.js napi)",
        "<!@(node scripts/sources.js runtime)",
        "<!@(node scripts/sources.js ref)"
      ],
      "include_dirs": [
        "csrc/include",
        "csrc",
        "<!(node -p \"require('node-addon-api').include_dir\")"
      ],
      "defines": [
        "NAPI_VERSION=8",
        "NAPI_CPP_EXCEPTIONS",
        "NODE_ADDON_API_DISABLE_DEPRECATED",
        "QK_HAVE_X86_VARIANTS=1",
        "QK_BUILT_BY=\"node-gyp\""
      ],
      "cflags": ["-fvisibility=hidden", "<!@(node scripts/sources.js --flags ref)"],
      "cflags_cc": ["-std=c++17"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17", "-std=gnu++20"]
    }
  ]
}
