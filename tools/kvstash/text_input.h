// Text files given to --file: "-" is stdin; directories, missing files and binary files are refused
// with one line and an error kind before any model is loaded.
#pragma once
#include <string>
#include <string_view>

namespace kvstash::cli {

// The whole file (or stdin for "-"). Throws NotFound, IOError, or InvalidArgument for a directory
// or a file that looks binary.
std::string read_text_file(const std::string& path);

// True when the first 64 KiB hold a NUL byte or are mostly not UTF-8.
bool looks_binary(std::string_view head);

}  // namespace kvstash::cli
