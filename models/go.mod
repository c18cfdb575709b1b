// The demo model lives in its own module so that `go get github.com/llamago/llamago` does not
// download its 25 MB: a nested module's files are left out of the parent's module zip.
module github.com/llamago/llamago/models

go 1.26.0
