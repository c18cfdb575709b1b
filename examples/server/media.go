package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/llamago/llamago/llama"
)

// chatMessageIn is a chat message of a request: llama's OpenAI format, plus the media of
// its content parts (image_url with a data: URL, input_audio), decoded by the projector
// when the request is served.
type chatMessageIn struct {
	llama.Message
	media map[int]mediaPart // by index in Parts
}

type mediaPart struct {
	field string // for errors: messages[i].content[j].image_url
	data  []byte
	url   string // a remote image, fetched only with --media-urls
}

// UnmarshalJSON reads the message and the bytes of its image and audio parts.
func (m *chatMessageIn) UnmarshalJSON(b []byte) error {
	if err := m.Message.UnmarshalJSON(b); err != nil {
		return err
	}
	var raw struct {
		Content json.RawMessage `json:"content"`
	}
	if err := json.Unmarshal(b, &raw); err != nil || len(raw.Content) == 0 || raw.Content[0] != '[' {
		return nil
	}
	var parts []struct {
		Type     string `json:"type"`
		ImageURL *struct {
			URL string `json:"url"`
		} `json:"image_url"`
		InputAudio *struct {
			Data   string `json:"data"`
			Format string `json:"format"`
		} `json:"input_audio"`
	}
	if err := json.Unmarshal(raw.Content, &parts); err != nil {
		return err
	}
	for i, p := range parts {
		var part mediaPart
		switch p.Type {
		case "image_url":
			if p.ImageURL == nil {
				return badRequest("image_url", "an image_url part without image_url")
			}
			u := p.ImageURL.URL
			if strings.HasPrefix(u, "https://") || strings.HasPrefix(u, "http://") {
				part = mediaPart{field: "image_url", url: u}
				break
			}
			rest, ok := strings.CutPrefix(u, "data:")
			if !ok {
				return badRequest("image_url", "image_url must be a data: URL (data:image/png;base64,...) or, with --media-urls, an http(s) URL")
			}
			meta, payload, ok := strings.Cut(rest, ",")
			if !ok || !strings.HasSuffix(meta, ";base64") {
				return badRequest("image_url", "a data: URL with base64 content is expected")
			}
			data, err := base64.StdEncoding.DecodeString(payload)
			if err != nil {
				return badRequest("image_url", "image_url data is not valid base64")
			}
			part = mediaPart{field: "image_url", data: data}
		case "input_audio":
			if p.InputAudio == nil {
				return badRequest("input_audio", "an input_audio part without input_audio")
			}
			if f := p.InputAudio.Format; f != "wav" && f != "mp3" && f != "flac" {
				return badRequest("input_audio", fmt.Sprintf("input_audio format %q: want wav, mp3 or flac", f))
			}
			data, err := base64.StdEncoding.DecodeString(p.InputAudio.Data)
			if err != nil {
				return badRequest("input_audio", "input_audio data is not valid base64")
			}
			part = mediaPart{field: "input_audio", data: data}
		default:
			continue
		}
		if m.media == nil {
			m.media = map[int]mediaPart{}
		}
		m.media[i] = part
	}
	return nil
}

// messagesWithMedia decodes the media of the messages with p, replacing their parts with
// image and audio parts; it returns the media in order (to close after the request).
// fetch gets remote images (nil: they are refused).
func messagesWithMedia(ctx context.Context, in []chatMessageIn, p *llama.Projector, fetch *mediaFetcher) ([]llama.Message, []*llama.Media, error) {
	msgs := make([]llama.Message, len(in))
	var media []*llama.Media
	fail := func(err error) ([]llama.Message, []*llama.Media, error) {
		for _, m := range media {
			m.Close()
		}
		return nil, nil, err
	}
	for i, m := range in {
		msgs[i] = m.Message
		if len(m.media) == 0 {
			continue
		}
		if p == nil {
			return fail(badRequest("messages", "this model takes no images or audio: start the server with --mmproj FILE (the model's projector)"))
		}
		msgs[i].Parts = append([]llama.ContentPart(nil), m.Parts...)
		for j := range msgs[i].Parts {
			part, ok := m.media[j]
			if !ok {
				continue
			}
			field := fmt.Sprintf("messages[%d].content[%d].%s", i, j, part.field)
			if part.url != "" {
				if fetch == nil {
					return fail(badRequest(field, "remote image URLs are not fetched: send a data: URL, or start the server with --media-urls"))
				}
				var err error
				if part.data, err = fetch.get(ctx, part.url); err != nil {
					return fail(badRequest(field, err.Error()))
				}
			}
			md, err := p.DecodeMedia(part.data)
			if err != nil {
				return fail(badRequest(field, err.Error()))
			}
			media = append(media, md)
			kind := "image"
			if md.IsAudio() {
				kind = "audio"
			}
			msgs[i].Parts[j] = llama.ContentPart{Type: kind, Media: md}
		}
	}
	return msgs, media, nil
}

// mediaFetcher gets remote images for --media-urls, within a size and a time limit.
type mediaFetcher struct {
	client   *http.Client
	maxBytes int64
}

func newMediaFetcher(maxBytes int64, timeout time.Duration) *mediaFetcher {
	return &mediaFetcher{client: &http.Client{Timeout: timeout}, maxBytes: maxBytes}
}

func (f *mediaFetcher) get(ctx context.Context, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("image URL: %w", err)
	}
	resp, err := f.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetching the image: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetching the image: %s", resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, f.maxBytes+1))
	if err != nil {
		return nil, fmt.Errorf("fetching the image: %w", err)
	}
	if int64(len(data)) > f.maxBytes {
		return nil, fmt.Errorf("the image is larger than %d bytes (--media-max-mib)", f.maxBytes)
	}
	return data, nil
}
