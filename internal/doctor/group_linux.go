package doctor

import (
	"io/fs"
	"os/user"
	"strconv"
	"syscall"
)

// fileGroup names the group that owns a file ("" when unknown).
func fileGroup(fi fs.FileInfo) string {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return ""
	}
	g, err := user.LookupGroupId(strconv.Itoa(int(st.Gid)))
	if err != nil {
		return ""
	}
	return g.Name
}
