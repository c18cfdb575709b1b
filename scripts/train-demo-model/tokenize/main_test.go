package main

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const sample = `
Genesis 1

  1 In the beginning God created the heaven and the earth.
  2 And the earth was without form, and void; and darkness was upon the face of the deep.

1 Samuel 3

  1 And the child Samuel ministered unto the LORD before Eli.
`

func TestParse(t *testing.T) {
	chapters, err := Parse(strings.NewReader(sample))
	require.NoError(t, err)
	require.Len(t, chapters, 2)
	assert.Equal(t, "Genesis", chapters[0].Book)
	assert.Equal(t, 1, chapters[0].Number)
	assert.Equal(t, "In the beginning God created the heaven and the earth. And the earth was without form, and void; and darkness was upon the face of the deep.", chapters[0].Text())
	assert.Equal(t, "1 Samuel", chapters[1].Book)
	assert.Equal(t, "1 Samuel 3", chapters[1].Heading)
}

func TestParseRejects(t *testing.T) {
	for name, text := range map[string]string{
		"wrapped":       "Genesis 1\n\n  1 In the beginning God created the heaven\nand the earth.\n",
		"verse gap":     "Genesis 1\n\n  1 In the beginning.\n  3 And God said.\n",
		"no heading":    "  1 In the beginning.\n",
		"empty":         "\n\n",
		"empty chapter": "Genesis 1\n\nGenesis 2\n\n  1 Thus the heavens.\n",
	} {
		_, err := Parse(strings.NewReader(text))
		assert.Error(t, err, name)
	}
}

func TestValSplitKeepsQuotedChapters(t *testing.T) {
	for i := range 2000 {
		for h := range keepInTrain {
			assert.False(t, IsVal(i, Chapter{Heading: h}, 50), "%s at %d", h, i)
		}
	}
	assert.True(t, IsVal(25, Chapter{Heading: "Genesis 26"}, 50))
	assert.False(t, IsVal(25, Chapter{Heading: "Genesis 26"}, 0))
}
