package streams

import (
	_ "embed"

	"github.com/chatpipe/chatpipe/internal/lua"
)

var (
	//go:embed deadletter.lua
	deadLetterSrc string
	//go:embed trim.lua
	trimSrc string
	//go:embed delconsumer.lua
	delConsumerSrc string
	//go:embed replay.lua
	replaySrc string
	//go:embed group.lua
	groupSrc string
	//go:embed unmark.lua
	unmarkSrc string
)

var (
	deadLetterScript  = lua.NewScript("deadletter", deadLetterSrc)
	trimScript        = lua.NewScript("trim", trimSrc)
	delConsumerScript = lua.NewScript("delconsumer", delConsumerSrc)
	replayScript      = lua.NewScript("replay", replaySrc)
	groupScript       = lua.NewScript("group", groupSrc)
	unmarkScript      = lua.NewScript("unmark", unmarkSrc)
)
